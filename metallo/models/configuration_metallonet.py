"""MetalloNet model configuration"""

from .configuration_common import MetalloNetworkConfig, check_choice, check_positive_int

#: What a MetalloNet classical branch reads (see `classical_features`).
CLASSICAL_FEATURES = ("cells", "global")
#: The pairs of views the cell contrastive loss matches (see `cell_contrast_views`).
CELL_CONTRAST_VIEWS = ("crop", "halves")
#: Fields of the retired ResNet designs (grid and attention fusion); a config.json holding one is such a model.
RETIRED_FIELDS = ("fusion", "cell_feature_stages", "num_fusion_layers", "backbone")


class MetalloNetConfig(MetalloNetworkConfig):
    r"""
    Configuration of a [`MetalloNetModel`], the main regressor: the fields below plus those of
    [`MetalloNetworkConfig`] and [`MetalloConfig`]. Every measurement cell's region of the micrograph (at the stored
    resolution) and the spectrum measured there are encoded by networks shared over cells, fused per cell into a
    contribution and aggregated with the sample's global context; an optional closed-form branch of hand-made
    per-cell statistics is added to the prediction.

    Args:
        grid_extent (`tuple[float, float, float, float]`, *optional*, defaults to `(0, 0, 1, 1)`):
            Where the measurement grid lies in the stored image, as normalised `(x0, y0, x1, y1)`; beyond 0..1 when
            convert cropped part of the measured field away. Set by the training stage from the convert geometry.
        cell_channels (`list[int]`, *optional*, defaults to `[16, 32, 64]`):
            Channels of the CNN every cell's image region goes through: a 5x5 stride-2 stem, then one 3x3 stride-2
            convolution per further entry; the last map's mean and standard deviation describe the cell.
        spectral_resolution (`int`, *optional*, defaults to 128):
            Points each spectrum is resampled to (band means when it is longer) before the spectral CNN, whose
            output keeps wavelength positions (`spectral_channels` sets its widths).
        classical_branch (`bool`, *optional*, defaults to `False`):
            Add a linear readout of hand-made features of the raw inputs (`classical_features`) to the prediction.
            The training stage fits it by ridge regression and zeroes the learned readouts before training, so
            training starts from its predictions and the network learns what it misses; the start is kept when
            validation favours it. The pipeline's `params.yaml` turns it on.
        classical_features (`str`, *optional*, defaults to `"cells"`):
            What the classical branch reads. `"cells"`: per measurement cell, texture statistics of the micrograph
            over the cell's box and the SNV band means of that cell's spectrum, combined as the mean over cells of
            their outer products (see [`~models.cells.CellInteractionFeatures`]); its per-cell terms are part of
            `cell_contributions`. `"global"`: the classical baseline's sample-level features.
        cell_bands (`int`, *optional*, defaults to 16):
            Wavelength bands of each SNV spectrum in the `"cells"` features (at most `spectrum_length`).
        cell_texture_scales (`list[int]`, *optional*, defaults to `[1, 2, 4]`):
            Box-blur sizes (pixels of the stored image) at which the `"cells"` texture statistics are taken.
        cell_contrast_weight (`float`, *optional*, defaults to 1.0):
            Weight of the self-supervised contrastive loss on cell regions added to the training loss (see
            [`~models.cell_path.CellContrast`]): it teaches the cell encoder what tells cells apart, which the label,
            an average over cells, barely does. 0 trains from the label alone. Not used at inference.
        cell_contrast_temperature (`float`, *optional*, defaults to 0.1):
            Temperature of that loss's softmax over the batch's cells.
        cell_view_crop (`float`, *optional*, defaults to 0.7):
            Side of the random crop of a cell region in the contrastive view, as a fraction of the region's.
        cell_contrast_views (`str`, *optional*, defaults to `"crop"`):
            What the contrastive loss pairs. `"crop"`: each cell with an altered crop inside it (`cell_view_crop`).
            `"halves"`: two disjoint halves of each cell (split across a random axis), each altered; no pixel is
            shared, so only what the whole cell has in common (the shape, direction or arrangement of its structure)
            matches them. Over three seeds (docs/results.md) it read direction and elongation better and
            local_specimens worse, even on average; `"crop"` stays the default, held-out validation chooses.
    """

    model_type = "metallo_metallonet"

    def __init__(
        self,
        grid_extent=(0.0, 0.0, 1.0, 1.0),
        cell_channels=(16, 32, 64),
        spectral_resolution=128,
        classical_branch=False,
        classical_features="cells",
        cell_bands=16,
        cell_texture_scales=(1, 2, 4),
        cell_contrast_weight=1.0,
        cell_contrast_temperature=0.1,
        cell_view_crop=0.7,
        cell_contrast_views="crop",
        **kwargs,
    ):
        if retired := [field for field in RETIRED_FIELDS if field in kwargs]:
            raise ValueError(
                f"this MetalloNet config has fields of the retired ResNet design ({', '.join(retired)}): it was "
                "saved by an earlier Metallo, whose MetalloNet this version cannot load. Retrain the model (dvc repro "
                "train), or use the Metallo version that trained it."
            )
        self.grid_extent = [float(v) for v in grid_extent]
        self.cell_channels = list(cell_channels)
        self.spectral_resolution = spectral_resolution
        self.classical_branch = bool(classical_branch)
        self.classical_features = classical_features
        self.cell_bands = cell_bands
        self.cell_texture_scales = [int(v) for v in cell_texture_scales]
        self.cell_contrast_weight = float(cell_contrast_weight)
        self.cell_contrast_temperature = float(cell_contrast_temperature)
        self.cell_view_crop = float(cell_view_crop)
        self.cell_contrast_views = cell_contrast_views
        super().__init__(**kwargs)
        self._validate_cells()

    def _validate_cells(self) -> None:
        for field in ("spectral_resolution", "cell_bands"):
            check_positive_int(field, getattr(self, field))
        if not self.cell_channels:
            raise ValueError("cell_channels must list at least one channel count")
        for value in self.cell_channels:
            check_positive_int("cell_channels", value)
        self.cell_bands = min(self.cell_bands, self.spectrum_length)
        x0, y0, x1, y1 = self.grid_extent if len(self.grid_extent) == 4 else (0, 0, 0, 0)
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"grid_extent must be (x0, y0, x1, y1) with x0 < x1 and y0 < y1; got {self.grid_extent!r}")
        check_choice("classical_features", self.classical_features, CLASSICAL_FEATURES)
        if self.classical_branch and self.classical_features == "cells" and len(self.modalities) < 2:
            raise ValueError("classical_features='cells' pairs image and spectra cells; with one modality use 'global'")
        if self.cell_contrast_weight < 0 or self.cell_contrast_temperature <= 0:
            raise ValueError(
                "cell_contrast_weight must be >= 0 and cell_contrast_temperature > 0; got "
                f"{self.cell_contrast_weight!r} and {self.cell_contrast_temperature!r}"
            )
        if not 0.0 < self.cell_view_crop <= 1.0:
            raise ValueError(f"cell_view_crop must be in (0, 1]; got {self.cell_view_crop!r}")
        check_choice("cell_contrast_views", self.cell_contrast_views, CELL_CONTRAST_VIEWS)
        if not self.cell_texture_scales or min(self.cell_texture_scales) < 1:
            raise ValueError(f"cell_texture_scales must be positive integers; got {self.cell_texture_scales!r}")

    @property
    def explanation_maps(self) -> str | None:
        """Every measurement cell's contribution to the prediction."""
        return "cells"

    @property
    def raw_copies(self) -> bool:
        """The cells are read from the stored-resolution image (and the classical branch reads raw spectra)."""
        return True


__all__ = ["CLASSICAL_FEATURES", "MetalloNetConfig"]
