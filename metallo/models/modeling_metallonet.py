"""PyTorch MetalloNet model: the main Metallo regressor."""

import torch
from torch import nn
from transformers import BertConfig
from transformers import initialization as init
from transformers.models.bert.modeling_bert import BertLayer, BertSelfOutput

from .common import MetalloPreTrainedModel, ResNetTrunk, SpectralEncoder, feature_map_size
from .configuration_metallonet import MetalloNetConfig


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


class MetalloNetFusion(nn.Module):
    """CLS + main tokens through `num_fusion_layers` fusion layers, cross-attending to context tokens if given.

    Returns the CLS hidden state (B, hidden_dim).
    """

    def __init__(self, config: MetalloNetConfig, cross_attention: bool):
        super().__init__()
        bert_config = BertConfig(
            hidden_size=config.hidden_dim,
            num_hidden_layers=config.num_fusion_layers,
            num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            hidden_act="gelu",
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.dropout,
            is_decoder=cross_attention,
            add_cross_attention=cross_attention,
            attn_implementation="sdpa",
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_dim))
        self.layers = nn.ModuleList(
            [MetalloNetFusionLayer(bert_config, layer_idx=i) for i in range(config.num_fusion_layers)]
        )

    def forward(self, tokens: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        for layer in self.layers:
            hidden_states = layer(hidden_states, encoder_hidden_states=context)
        return hidden_states[:, 0]


class MetalloNetModel(MetalloPreTrainedModel):
    """Image tokens (spatially attended) and grid-placed spectral tokens fused by a transformer; CLS -> regression.

    With both modalities the CLS + image tokens are the main sequence and cross-attend to the spectral tokens through
    a gated residual; with one modality its tokens are the main sequence and there is no cross-attention.
    """

    config_class = MetalloNetConfig
    base_model_prefix = "metallonet"

    def __init__(self, config: MetalloNetConfig):
        super().__init__(config)
        self.image_encoder = MetalloNetImageEncoder(config) if "image" in config.modalities else None
        self.spectral_encoder = MetalloNetSpectralEncoder(config) if "spectra" in config.modalities else None
        self.spatial_prior = MetalloNetSpatialPrior(config.hidden_dim)
        self.fusion = MetalloNetFusion(config, cross_attention=len(config.modalities) == 2)
        self.head = nn.Sequential(
            nn.LayerNorm(config.hidden_dim), nn.Dropout(config.dropout), nn.Linear(config.hidden_dim, 1)
        )
        self.post_init()
        self.load_backbone_weights(self.image_encoder.trunk if self.image_encoder is not None else None)

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

    def forward_features(
        self, pixel_values: torch.Tensor | None, spectra: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the fused CLS state (B, hidden_dim) and the attention map (B, h, w), None without the image."""
        image_tokens = attention = spectral_tokens = None
        if self.image_encoder is not None:
            image_tokens, attention = self.image_encoder(pixel_values, self.spatial_prior)
        if self.spectral_encoder is not None:
            spectral_tokens = self.spectral_encoder(spectra, self.spatial_prior)
        if image_tokens is None:
            return self.fusion(spectral_tokens), attention
        return self.fusion(image_tokens, context=spectral_tokens), attention

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """LayerNorm -> Linear on the CLS state: (B, hidden_dim) -> (B,) in standardised label units."""
        return self.head(features).squeeze(-1)


__all__ = ["MetalloNetModel"]
