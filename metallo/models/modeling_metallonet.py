"""PyTorch MetalloNet model: the main Metallo regressor."""

import torch
from torch import nn
from transformers import BertConfig
from transformers import initialization as init
from transformers.models.bert.modeling_bert import BertLayer, BertSelfOutput

from .cells import CellInteractionFeatures, cell_pooling_weights
from .configuration_classical import FEATURE_DEFAULTS, RIDGE_ALPHAS
from .configuration_metallonet import MetalloNetConfig
from .modeling_classical import ClassicalFeatures, fit_ridge, set_linear
from .modeling_common import MetalloPreTrainedModel, ResNetTrunk, SpectralEncoder, feature_map_size, stage_stride


class MetalloNetSpatialAttention(nn.Module):
    """CBAM spatial attention: channel-mean and channel-max maps -> 7x7 conv -> sigmoid map multiplied onto features.

    Returns the reweighted features (B, C, h, w) and the map (B, h, w), in [0, 1], showing which feature-map cells
    the model emphasises.
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.cat([features.mean(dim=1, keepdim=True), features.amax(dim=1, keepdim=True)], dim=1)
        attention = torch.sigmoid(self.conv(pooled))
        return features * attention, attention.squeeze(1)


class MetalloNetGridPositionEmbedding(nn.Module):
    """Learned row + column embeddings for a rows x cols grid, flattened row-major to (rows * cols, hidden_dim)."""

    def __init__(self, rows: int, cols: int, hidden_dim: int):
        super().__init__()
        self.row_embeddings = nn.Embedding(rows, hidden_dim)
        self.col_embeddings = nn.Embedding(cols, hidden_dim)

    def forward(self) -> torch.Tensor:
        grid = self.row_embeddings.weight[:, None, :] + self.col_embeddings.weight[None, :, :]
        return grid.flatten(0, 1)


class MetalloNetSpatialPrior(nn.Module):
    """Shared MLP from normalised (y, x) cell centres in [0, 1] to hidden_dim.

    Applied to both the image feature-map grid and the spectral measurement grid, so an image token and a spectral
    token from the same place on the micrograph receive the same positional prior.
    """

    def __init__(self, hidden_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim))

    def forward(self, rows: int, cols: int) -> torch.Tensor:
        weight = self.mlp[0].weight
        y = (torch.arange(rows, device=weight.device, dtype=weight.dtype) + 0.5) / rows
        x = (torch.arange(cols, device=weight.device, dtype=weight.dtype) + 0.5) / cols
        coords = torch.stack(torch.meshgrid(y, x, indexing="ij"), dim=-1).view(rows * cols, 2)
        return self.mlp(coords)


class MetalloNetImageEncoder(nn.Module):
    """ResNet feature map -> spatial attention -> one token per cell: (B, 3, H, W) -> (B, h * w, hidden_dim)."""

    def __init__(self, config: MetalloNetConfig):
        super().__init__()
        self.grid_size = feature_map_size(config.image_size)
        self.trunk = ResNetTrunk(config.backbone)
        self.spatial_attention = MetalloNetSpatialAttention()
        self.proj = nn.Linear(self.trunk.num_channels, config.hidden_dim)
        self.position_embeddings = MetalloNetGridPositionEmbedding(self.grid_size, self.grid_size, config.hidden_dim)
        self.norm = nn.LayerNorm(config.hidden_dim)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, pixel_values: torch.Tensor, spatial_prior: MetalloNetSpatialPrior
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features, attention = self.spatial_attention(self.trunk(pixel_values))
        tokens = self.proj(features.flatten(2).transpose(1, 2))
        tokens = tokens + self.position_embeddings() + spatial_prior(self.grid_size, self.grid_size)
        return self.dropout(self.norm(tokens)), attention


class MetalloNetSpectralEncoder(nn.Module):
    """Depthwise-separable Conv1d encoder -> one token per spectrum, placed on the measurement grid.

    (B, S, L) -> (B, S, hidden_dim); token `k` gets the position of grid cell (k // cols, k % cols).
    """

    def __init__(self, config: MetalloNetConfig):
        super().__init__()
        self.grid = config.grid
        self.encoder = SpectralEncoder(
            config.spectral_channels, config.spectral_pool_size, config.hidden_dim, separable=True
        )
        self.position_embeddings = MetalloNetGridPositionEmbedding(*config.grid, config.hidden_dim)
        self.norm = nn.LayerNorm(config.hidden_dim)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, spectra: torch.Tensor, spatial_prior: MetalloNetSpatialPrior) -> torch.Tensor:
        tokens = self.encoder(spectra) + self.position_embeddings() + spatial_prior(*self.grid)
        return self.dropout(self.norm(tokens))


class MetalloNetGatedOutput(BertSelfOutput):
    """BertSelfOutput whose residual branch is scaled by tanh(gate): LayerNorm(input + tanh(gate) * dense(hidden))."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.dense(hidden_states))
        return self.LayerNorm(input_tensor + torch.tanh(self.gate) * hidden_states)


class MetalloNetFusionLayer(BertLayer):
    """A BertLayer with bidirectional self-attention and, if built with cross-attention, a gated cross residual.

    transformers only builds cross-attention for decoder configs (`is_decoder=True`), which makes the self-attention
    causal; the main sequence (CLS + image tokens) must attend both ways, so causality is switched off here.
    """

    def __init__(self, config: BertConfig, layer_idx: int):
        super().__init__(config, layer_idx=layer_idx)
        self.attention.self.is_causal = False
        if self.add_cross_attention:
            self.crossattention.output = MetalloNetGatedOutput(config)


def fusion_layer_config(config: MetalloNetConfig, **attention) -> BertConfig:
    """The `BertConfig` of MetalloNet's fusion layers (width `hidden_dim`, GELU, SDPA); `attention`: cross-attention
    switches."""
    return BertConfig(
        hidden_size=config.hidden_dim,
        num_hidden_layers=config.num_fusion_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        hidden_act="gelu",
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
        attn_implementation="sdpa",
        **attention,
    )


class MetalloNetFusion(nn.Module):
    """CLS + main tokens through `num_fusion_layers` fusion layers, cross-attending to context tokens if given.

    Returns the CLS hidden state (B, hidden_dim).
    """

    def __init__(self, config: MetalloNetConfig, cross_attention: bool):
        super().__init__()
        bert_config = fusion_layer_config(config, is_decoder=cross_attention, add_cross_attention=cross_attention)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_dim))
        self.layers = nn.ModuleList(
            [MetalloNetFusionLayer(bert_config, layer_idx=i) for i in range(config.num_fusion_layers)]
        )

    def forward(self, tokens: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        for layer in self.layers:
            hidden_states = layer(hidden_states, encoder_hidden_states=context)
        return hidden_states[:, 0]


class MetalloNetCellImageEncoder(nn.Module):
    """Per-cell image features: mean and std of ResNet stage outputs over each measurement cell's box.

    (B, 3, H, W) -> cell tokens (B, S, hidden_dim) and a global image token (B, hidden_dim). Mean and standard
    deviation pooling of mid-level features describes the texture (grain size, phase fraction) of the very area a
    spectrum was measured over; the trunk stops at the deepest stage it needs.
    """

    def __init__(self, config: MetalloNetConfig):
        super().__init__()
        self.stages = list(config.cell_feature_stages)
        self.trunk = ResNetTrunk(config.backbone, depth=max(self.stages))
        channels = sum(self.trunk.stage_channels[stage] for stage in self.stages)
        for stage in self.stages:
            weights = cell_pooling_weights(config.grid_extent, config.grid, config.image_size, stage_stride(stage))
            self.register_buffer(f"cell_weights_{stage}", weights)  # saved: from_pretrained builds on meta
        self.cell_proj = nn.Sequential(nn.LayerNorm(2 * channels), nn.Linear(2 * channels, config.hidden_dim))
        self.global_proj = nn.Sequential(nn.LayerNorm(2 * channels), nn.Linear(2 * channels, config.hidden_dim))

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.trunk.forward_stages(pixel_values)
        cells, whole = [], []
        with torch.autocast(pixel_values.device.type, enabled=False):  # moments in float32, also under bf16
            for stage in self.stages:
                features = outputs[stage].float().flatten(2)  # (B, C, h*w)
                weights = getattr(self, f"cell_weights_{stage}")
                mean = features @ weights.t()  # (B, C, S)
                var = (features.square() @ weights.t() - mean.square()).clamp_min(0)
                cells.append(torch.cat([mean, (var + 1e-6).sqrt()], dim=1))
                whole.append(torch.cat([features.mean(-1), features.std(-1, correction=0)], dim=1))
        cell_tokens = self.cell_proj(torch.cat(cells, dim=1).transpose(1, 2))
        return cell_tokens, self.global_proj(torch.cat(whole, dim=1))


class MetalloNetGridFusion(nn.Module):
    """Fuse each cell's image and spectral tokens, let the cells and a CLS token attend to each other, and read out.

    The fused cell representation sees the two tokens and their elementwise product, so local interactions (what a
    spectrum means depends on the microstructure under it) are easy to learn. The prediction is the CLS readout (the
    global part) plus the mean of the per-cell readouts, which are returned as the cells' contributions.
    """

    def __init__(self, config: MetalloNetConfig):
        super().__init__()
        width = config.hidden_dim
        self.cell_mlp = nn.Sequential(
            nn.LayerNorm(3 * width),
            nn.Linear(3 * width, width),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(width, width),
        )
        self.position_embeddings = MetalloNetGridPositionEmbedding(*config.grid, width)
        self.context_proj = nn.Linear(2 * width, width)
        bert_config = fusion_layer_config(config)
        self.layers = nn.ModuleList([BertLayer(bert_config, layer_idx=i) for i in range(config.num_fusion_layers)])
        self.norm = nn.LayerNorm(width)
        self.cell_head = nn.Linear(width, 1)

    def forward(
        self,
        image_cells: torch.Tensor,
        spectral_cells: torch.Tensor,
        image_global: torch.Tensor,
        spectral_global: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the CLS state (B, hidden_dim) and per-cell contributions (B, S) in standardised label units."""
        cells = self.cell_mlp(torch.cat([image_cells, spectral_cells, image_cells * spectral_cells], dim=-1))
        cells = cells + self.position_embeddings()
        cls = self.context_proj(torch.cat([image_global, spectral_global], dim=-1)).unsqueeze(1)
        hidden = torch.cat([cls, cells], dim=1)
        for layer in self.layers:
            hidden = layer(hidden)
        hidden = self.norm(hidden)
        return hidden[:, 0], self.cell_head(hidden[:, 1:]).squeeze(-1)


class MetalloNetModel(MetalloPreTrainedModel):
    """Micrograph and spectra fused where each spectrum was measured; one regression output.

    `fusion="grid"` (default): the image features of each measurement cell (mean/std pooling of ResNet stages over
    the cell's box) meet that cell's spectral token; the fused cells and a global CLS token attend to each other, and
    the prediction is the CLS readout plus the mean per-cell contribution. `fusion="attention"` (the first design):
    spatially attended image tokens lead and cross-attend to grid-placed spectral tokens; CLS -> regression.
    """

    config_class = MetalloNetConfig
    base_model_prefix = "metallonet"

    def __init__(self, config: MetalloNetConfig):
        super().__init__(config)
        has_image, has_spectra = "image" in config.modalities, "spectra" in config.modalities
        if config.fusion == "grid":
            self.image_encoder = MetalloNetCellImageEncoder(config) if has_image else None
            self.spectral_encoder = (
                SpectralEncoder(config.spectral_channels, config.spectral_pool_size, config.hidden_dim, separable=True)
                if has_spectra
                else None
            )
            self.fusion = MetalloNetGridFusion(config)
        else:
            self.image_encoder = MetalloNetImageEncoder(config) if has_image else None
            self.spectral_encoder = MetalloNetSpectralEncoder(config) if has_spectra else None
            self.spatial_prior = MetalloNetSpatialPrior(config.hidden_dim)
            self.fusion = MetalloNetFusion(config, cross_attention=len(config.modalities) == 2)
        self.head = nn.Sequential(
            nn.LayerNorm(config.hidden_dim), nn.Dropout(config.dropout), nn.Linear(config.hidden_dim, 1)
        )
        if config.classical_branch and config.classical_features == "cells":
            self.classical_branch = CellInteractionFeatures(
                config.grid, config.grid_extent, config.cell_bands, config.cell_texture_scales
            )
            self.classical_head = nn.Linear(self.classical_branch.n_features, 1)
        elif config.classical_branch:
            settings = {**FEATURE_DEFAULTS, "n_bands": min(FEATURE_DEFAULTS["n_bands"], config.spectrum_length)}
            self.classical_branch = ClassicalFeatures(config.modalities, **settings)
            self.classical_head = nn.Linear(self.classical_branch.n_features, 1)
        self.post_init()
        self.load_backbone_weights(self.image_encoder.trunk if self.image_encoder is not None else None)

    def forward_classical_branch(self, raw_pixel_values, raw_spectra) -> torch.Tensor | None:
        """Linear readout of the classical features of the raw inputs, (B,) in standardised label units."""
        if not self.config.classical_branch:
            return None
        self._check_raw_inputs(raw_pixel_values, raw_spectra)
        return self.classical_head(self.classical_branch(raw_pixel_values, raw_spectra)).squeeze(-1)

    def classical_cell_terms(self, raw_pixel_values, raw_spectra) -> torch.Tensor | None:
        """The `"cells"` classical branch split into measurement cells, (B, S) in standardised label units."""
        if not (self.config.classical_branch and self.config.classical_features == "cells"):
            return None
        self._check_raw_inputs(raw_pixel_values, raw_spectra)
        return self.classical_branch.cell_terms(raw_pixel_values, raw_spectra, self.classical_head)

    def _check_raw_inputs(self, raw_pixel_values, raw_spectra) -> None:
        if ("image" in self.config.modalities and raw_pixel_values is None) or (
            "spectra" in self.config.modalities and raw_spectra is None
        ):
            raise ValueError(
                "this MetalloNet has a classical branch (classical_branch=True): pass raw_pixel_values "
                "(intensities in [0, 1]) and raw_spectra (as measured), as MetalloProcessor(raw_copies="
                "True) does"
            )

    @torch.no_grad()
    def initialise_classical_branch(self, features, targets) -> float:
        """Fit the classical branch by ridge on training `features` (its `prepare`d rows) / standardised `targets`
        and zero the deep readouts, so the model starts at the branch's predictions. Returns the ridge penalty."""
        fitted = fit_ridge(features, targets, list(RIDGE_ALPHAS))
        self.classical_branch.set_statistics(fitted["mean"], fitted["std"])
        set_linear(self.classical_head, fitted["coef"], fitted["intercept"])
        readouts = [self.head[-1]] + ([self.fusion.cell_head] if self.config.fusion == "grid" else [])
        for layer in readouts:
            layer.weight.zero_()
            layer.bias.zero_()
        return fitted["alpha"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, MetalloNetSpatialAttention):
            init.normal_(module.conv.weight, std=std)
            init.zeros_(module.conv.bias)
        elif isinstance(module, MetalloNetGatedOutput):
            init.constant_(module.gate, self.config.fusion_gate_init)
        elif isinstance(module, MetalloNetFusion):
            init.normal_(module.cls_token, std=std)

    def forward_features(self, pixel_values: torch.Tensor | None, spectra: torch.Tensor | None):
        """Grid fusion: ((CLS state, per-cell readouts), {"cell_contributions"}); attention fusion: (CLS state,
        {"attention"} when the image is used)."""
        if self.config.fusion == "grid":
            return self._grid_features(pixel_values, spectra)
        image_tokens = attention = spectral_tokens = None
        if self.image_encoder is not None:
            image_tokens, attention = self.image_encoder(pixel_values, self.spatial_prior)
        if self.spectral_encoder is not None:
            spectral_tokens = self.spectral_encoder(spectra, self.spatial_prior)
        maps = {"attention": attention} if attention is not None else {}
        if image_tokens is None:
            return self.fusion(spectral_tokens), maps
        return self.fusion(image_tokens, context=spectral_tokens), maps

    def _grid_features(self, pixel_values, spectra):
        reference = pixel_values if pixel_values is not None else spectra
        batch, (rows, cols), width = reference.shape[0], self.config.grid, self.config.hidden_dim
        zeros_cells = reference.new_zeros(batch, rows * cols, width)
        zeros_global = reference.new_zeros(batch, width)
        image_cells, image_global = (
            self.image_encoder(pixel_values) if self.image_encoder is not None else (zeros_cells, zeros_global)
        )
        spectral_cells = self.spectral_encoder(spectra) if self.spectral_encoder is not None else zeros_cells
        cls, cells = self.fusion(image_cells, spectral_cells, image_global, spectral_cells.mean(dim=1))
        contributions = (cells.float() * self.config.label_std).view(batch, rows, cols)
        return (cls, cells), {"cell_contributions": contributions}

    def forward(
        self,
        pixel_values=None,
        spectra=None,
        labels=None,
        return_attention=False,
        raw_pixel_values=None,
        raw_spectra=None,
    ):
        """See [`MetalloPreTrainedModel.forward`]. With a `"cells"` classical branch, `cell_contributions` holds
        the deep per-cell readouts plus the branch's per-cell terms, in label units."""
        output = super().forward(pixel_values, spectra, labels, return_attention, raw_pixel_values, raw_spectra)
        if return_attention and output.cell_contributions is not None:
            terms = self.classical_cell_terms(raw_pixel_values, raw_spectra)
            if terms is not None:
                output.cell_contributions = (
                    output.cell_contributions + terms.view_as(output.cell_contributions) * self.config.label_std
                )
        return output

    def forward_head(self, features) -> torch.Tensor:
        """Readout in standardised label units, (B,): the CLS head, plus the mean per-cell readout (grid fusion)."""
        if self.config.fusion == "grid":
            cls, cells = features
            return self.head(cls).squeeze(-1) + cells.mean(dim=1)
        return self.head(features).squeeze(-1)


__all__ = ["MetalloNetModel"]
