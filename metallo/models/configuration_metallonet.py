"""MetalloNet model configuration"""

from transformers import PretrainedConfig

from .common import check_positive_int, validate_config

#: What a MetalloNet classical branch reads (see `classical_features`).
CLASSICAL_FEATURES = ("cells", "global")


class MetalloNetConfig(PretrainedConfig):
    r"""
    Configuration of a [`MetalloNetModel`], the main regressor. With `fusion="grid"` (default) the image features of
    each measurement cell meet the spectrum measured there; with `fusion="attention"` (the first design) spatially
    attended image tokens cross-attend to grid-placed spectral tokens in a BERT-style transformer.

    Args:
        image_size (`int`, *optional*, defaults to 128):
            Side of the square input micrograph (128 is the CPU demo resolution, 300 the full one). Sizes the
            per-cell pooling weights (grid fusion) or the image-token position embeddings (attention fusion).
        n_spectra (`int`, *optional*, defaults to 24):
            Number of spectra measured per image.
        grid (`tuple[int, int]`, *optional*, defaults to `(6, 4)`):
            Measurement grid (rows, cols) over the image; spectrum `k` sits at row `k // cols`, column `k % cols`,
            row-major from the top-left. `rows * cols` must equal `n_spectra`.
        spectrum_length (`int`, *optional*, defaults to 1600):
            Number of wavelength samples per spectrum.
        backbone (`str`, *optional*, defaults to `"resnet18"`):
            torchvision ResNet trunk, `"resnet18"` or `"resnet50"`, built with `weights=None`.
        backbone_weights (`str`, *optional*):
            Local `.safetensors` or `.pth` torchvision ResNet state dict loaded into the trunk when the model is
            first built (not by `from_pretrained`). Nothing is downloaded.
        modalities (`list[str]`, *optional*, defaults to `["image", "spectra"]`):
            Branches to build: `["image", "spectra"]`, `["image"]` (no cross-attention) or `["spectra"]` (the
            spectral tokens form the main sequence).
        hidden_dim (`int`, *optional*, defaults to 128):
            Width of the image and spectral tokens and of the fusion transformer.
        spectral_channels (`list[int]`, *optional*, defaults to `[16, 32, 64]`):
            Channels of the spectral encoder: a stride-4 Conv1d stem then one stride-2 depthwise-separable block per
            further entry.
        spectral_pool_size (`int`, *optional*, defaults to 8):
            Number of wavelength bins each spectrum is pooled to before it becomes a token.
        num_fusion_layers (`int`, *optional*, defaults to 2):
            Number of fusion transformer layers (`BertLayer`).
        num_attention_heads (`int`, *optional*, defaults to 4):
            Attention heads per fusion layer; must divide `hidden_dim`.
        intermediate_size (`int`, *optional*, defaults to 512):
            Width of the feed-forward block of each fusion layer.
        fusion (`str`, *optional*, defaults to `"grid"`):
            `"grid"`: each spectrum meets the image features of the cell it was measured over (see `MetalloNetModel`);
            `"attention"`: image tokens cross-attend to the spectral tokens (the first design).
        grid_extent (`tuple[float, float, float, float]`, *optional*, defaults to `(0, 0, 1, 1)`):
            Where the measurement grid lies in the model's image, as normalised `(x0, y0, x1, y1)`; beyond 0..1 when
            convert cropped part of the measured field away. Set by the training stage from the convert geometry.
        cell_feature_stages (`list[int]`, *optional*, defaults to `[2, 3]`):
            ResNet stages (1-4, strides 4-32) whose features are pooled over each cell (grid fusion); the trunk stops
            at the deepest one.
        classical_branch (`bool`, *optional*, defaults to `False`):
            Add a linear readout of hand-made features of the raw inputs (`classical_features`) to the prediction.
            The training stage fits it by ridge regression and zeroes the deep readouts before training, so
            training starts from its predictions and the network learns what it misses. Needs the processor's
            `raw_copies`. The pipeline's `params.yaml` turns it on.
        classical_features (`str`, *optional*, defaults to `"cells"`):
            What the classical branch reads. `"cells"`: per measurement cell, texture statistics of the micrograph
            over the cell's box (at the stored resolution) and the SNV band means of that cell's spectrum, combined
            as the mean over cells of their outer products (a per-cell bilinear model; see
            [`~models.cells.CellInteractionFeatures`]); its per-cell terms are part of `cell_contributions`.
            `"global"`: the classical baseline's sample-level features (see [`ClassicalConfig`]).
        cell_bands (`int`, *optional*, defaults to 16):
            Wavelength bands of each SNV spectrum in the `"cells"` features (at most `spectrum_length`).
        cell_texture_scales (`list[int]`, *optional*, defaults to `[1, 2, 4]`):
            Box-blur sizes (pixels of the stored image) at which the `"cells"` texture statistics are taken.
        fusion_gate_init (`float`, *optional*, defaults to 0.1) (attention fusion only):
            Initial value of the per-layer gate `alpha`; the cross-attention residual is scaled by `tanh(alpha)`,
            so the image path leads at the start of training.
        dropout (`float`, *optional*, defaults to 0.1):
            Dropout on tokens, attention probabilities, fusion layer outputs and before the regression head.
        loss (`str`, *optional*, defaults to `"mse"`):
            Training loss on standardised labels: `"mse"`, `"huber"` or `"l1"`.
        huber_delta (`float`, *optional*, defaults to 1.0):
            Delta of the Huber loss, in standardised label units.
        label_mean (`float`, *optional*, defaults to 0.0):
            Label mean used to standardise targets (set by the training stage).
        label_std (`float`, *optional*, defaults to 1.0):
            Label standard deviation used to standardise targets (set by the training stage).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal init of linear layers, embeddings and the CLS token.
    """

    model_type = "metallo_metallonet"

    def __init__(
        self,
        image_size=128,
        n_spectra=24,
        grid=(6, 4),
        spectrum_length=1600,
        backbone="resnet18",
        backbone_weights=None,
        modalities=("image", "spectra"),
        hidden_dim=128,
        spectral_channels=(16, 32, 64),
        spectral_pool_size=8,
        num_fusion_layers=2,
        num_attention_heads=4,
        intermediate_size=512,
        fusion="grid",
        grid_extent=(0.0, 0.0, 1.0, 1.0),
        cell_feature_stages=(2, 3),
        classical_branch=False,
        classical_features="cells",
        cell_bands=16,
        cell_texture_scales=(1, 2, 4),
        fusion_gate_init=0.1,
        dropout=0.1,
        loss="mse",
        huber_delta=1.0,
        label_mean=0.0,
        label_std=1.0,
        initializer_range=0.02,
        **kwargs,
    ):
        self.image_size = image_size
        self.n_spectra = n_spectra
        self.grid = grid
        self.spectrum_length = spectrum_length
        self.backbone = backbone
        self.backbone_weights = backbone_weights
        self.modalities = modalities
        self.hidden_dim = hidden_dim
        self.spectral_channels = spectral_channels
        self.spectral_pool_size = spectral_pool_size
        self.num_fusion_layers = num_fusion_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.fusion = fusion
        self.grid_extent = [float(v) for v in grid_extent]
        self.cell_feature_stages = sorted({int(v) for v in cell_feature_stages})
        self.classical_branch = bool(classical_branch)
        self.classical_features = classical_features
        self.cell_bands = min(int(cell_bands), int(spectrum_length))
        self.cell_texture_scales = [int(v) for v in cell_texture_scales]
        self.fusion_gate_init = fusion_gate_init
        self.dropout = dropout
        self.loss = loss
        self.huber_delta = huber_delta
        self.label_mean = label_mean
        self.label_std = label_std
        self.initializer_range = initializer_range
        validate_config(self)
        for field in ("num_fusion_layers", "num_attention_heads", "intermediate_size"):
            check_positive_int(field, getattr(self, field))
        if fusion not in ("grid", "attention"):
            raise ValueError(f"fusion must be 'grid' or 'attention'; got {fusion!r}")
        if len(self.grid_extent) != 4 or not (self.grid_extent[0] < self.grid_extent[2]
                                              and self.grid_extent[1] < self.grid_extent[3]):
            raise ValueError(f"grid_extent must be (x0, y0, x1, y1) with x0 < x1 and y0 < y1; got {grid_extent!r}")
        if classical_features not in CLASSICAL_FEATURES:
            raise ValueError(f"classical_features must be one of {list(CLASSICAL_FEATURES)}; got {classical_features!r}")
        if classical_features == "cells" and len(self.modalities) < 2 and self.classical_branch:
            raise ValueError("classical_features='cells' pairs image and spectra cells; with one modality use 'global'")
        check_positive_int("cell_bands", self.cell_bands)
        if not self.cell_texture_scales or min(self.cell_texture_scales) < 1:
            raise ValueError(f"cell_texture_scales must be positive integers; got {cell_texture_scales!r}")
        if not self.cell_feature_stages or not set(self.cell_feature_stages) <= {1, 2, 3, 4}:
            raise ValueError(f"cell_feature_stages must list ResNet stages 1-4; got {cell_feature_stages!r}")
        if hidden_dim % num_attention_heads:
            raise ValueError(
                f"hidden_dim ({hidden_dim}) must be divisible by num_attention_heads ({num_attention_heads})"
            )
        super().__init__(**kwargs)


__all__ = ["CLASSICAL_FEATURES", "MetalloNetConfig"]
