"""MetalloNet model configuration"""

from .configuration_common import MetalloNetworkConfig, check_choice, check_positive_int

#: How MetalloNet fuses the views (see `fusion`).
FUSIONS = ("grid", "attention")
#: What a MetalloNet classical branch reads (see `classical_features`).
CLASSICAL_FEATURES = ("cells", "global")


class MetalloNetConfig(MetalloNetworkConfig):
    r"""
    Configuration of a [`MetalloNetModel`], the main regressor: the fields below plus those of
    [`MetalloNetworkConfig`] and [`MetalloConfig`]. With `fusion="grid"` (default) the image features of
    each measurement cell meet the spectrum measured there; with `fusion="attention"` (the first design) spatially
    attended image tokens cross-attend to grid-placed spectral tokens in a BERT-style transformer.

    Args:
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
    """

    model_type = "metallo_metallonet"

    def __init__(
        self,
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
        **kwargs,
    ):
        self.num_fusion_layers = num_fusion_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.fusion = fusion
        self.grid_extent = [float(v) for v in grid_extent]
        self.cell_feature_stages = sorted({int(v) for v in cell_feature_stages})
        self.classical_branch = bool(classical_branch)
        self.classical_features = classical_features
        self.cell_bands = cell_bands
        self.cell_texture_scales = [int(v) for v in cell_texture_scales]
        self.fusion_gate_init = fusion_gate_init
        super().__init__(**kwargs)
        self._validate_fusion()

    def _validate_fusion(self) -> None:
        for field in ("num_fusion_layers", "num_attention_heads", "intermediate_size", "cell_bands"):
            check_positive_int(field, getattr(self, field))
        self.cell_bands = min(self.cell_bands, self.spectrum_length)
        check_choice("fusion", self.fusion, FUSIONS)
        x0, y0, x1, y1 = self.grid_extent if len(self.grid_extent) == 4 else (0, 0, 0, 0)
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"grid_extent must be (x0, y0, x1, y1) with x0 < x1 and y0 < y1; got {self.grid_extent!r}")
        check_choice("classical_features", self.classical_features, CLASSICAL_FEATURES)
        if self.classical_branch and self.classical_features == "cells" and len(self.modalities) < 2:
            raise ValueError("classical_features='cells' pairs image and spectra cells; with one modality use 'global'")
        if not self.cell_texture_scales or min(self.cell_texture_scales) < 1:
            raise ValueError(f"cell_texture_scales must be positive integers; got {self.cell_texture_scales!r}")
        if not self.cell_feature_stages or not set(self.cell_feature_stages) <= {1, 2, 3, 4}:
            raise ValueError(f"cell_feature_stages must list ResNet stages 1-4; got {self.cell_feature_stages!r}")
        if self.hidden_dim % self.num_attention_heads:
            raise ValueError(
                f"hidden_dim ({self.hidden_dim}) must be divisible by num_attention_heads ({self.num_attention_heads})"
            )

    @property
    def explanation_maps(self) -> str | None:
        """Per-cell contributions (grid fusion) or spatial attention (attention fusion); both need the image."""
        if "image" not in self.modalities:
            return None
        return "cells" if self.fusion == "grid" else "attention"

    @property
    def raw_copies(self) -> bool:
        """The classical branch reads the stored-resolution image and the measured spectra."""
        return self.classical_branch


__all__ = ["CLASSICAL_FEATURES", "FUSIONS", "MetalloNetConfig"]
