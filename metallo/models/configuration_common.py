"""Configuration shared by the Metallo regressors: the data shape, the label scale and the network fields."""

from transformers import PretrainedConfig

from metallo.layout import DEFAULT_SHAPE, MAX_IMAGE_SIZE, check_grid, check_positive_int

#: Input views a model can use.
MODALITIES = ("image", "spectra")
#: torchvision ResNet trunks a model can be built on.
BACKBONE_NAMES = ("resnet18", "resnet50")
#: Training losses on standardised labels.
LOSS_NAMES = ("mse", "huber", "l1")


def check_choice(field: str, value, choices) -> None:
    """Raises a ValueError unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"{field} must be one of {list(choices)}; got {value!r}")


class MetalloConfig(PretrainedConfig):
    r"""
    Fields every Metallo regressor has: the shape of one sample, the views it uses and the label scale. A model's
    own config class adds its fields; `metallo.models.config_fields(name)` lists all of them.

    Args:
        image_size (`int`, *optional*, defaults to 128):
            Side of the square micrograph the model sees (128 is the CPU demo resolution, 300 the full one; the
            stored image is resized to it on the device).
        n_spectra (`int`, *optional*, defaults to 24):
            Number of spectra measured per image.
        grid (`tuple[int, int]`, *optional*, defaults to `(6, 4)`):
            Measurement grid (rows, cols) over the image; spectrum `k` sits at row `k // cols`, column `k % cols`,
            row-major from the top-left. `rows * cols` must equal `n_spectra`.
        spectrum_length (`int`, *optional*, defaults to 1600):
            Number of wavelength samples per spectrum.
        modalities (`list[str]`, *optional*, defaults to `["image", "spectra"]`):
            Views to use: `["image", "spectra"]`, `["image"]` or `["spectra"]` (ablations).
        label_mean (`float`, *optional*, defaults to 0.0):
            Label mean used to standardise targets (set by the training stage).
        label_std (`float`, *optional*, defaults to 1.0):
            Label standard deviation used to standardise targets (set by the training stage).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal init of linear layers (and embeddings, tokens).
    """

    def __init__(
        self,
        image_size=128,
        n_spectra=DEFAULT_SHAPE.n_spectra,
        grid=DEFAULT_SHAPE.grid,
        spectrum_length=DEFAULT_SHAPE.spectrum_length,
        modalities=("image", "spectra"),
        label_mean=0.0,
        label_std=1.0,
        initializer_range=0.02,
        **kwargs,
    ):
        self.image_size = image_size
        self.n_spectra = n_spectra
        self.grid = grid
        self.spectrum_length = spectrum_length
        self.modalities = modalities
        self.label_mean = label_mean
        self.label_std = label_std
        self.initializer_range = initializer_range
        self._validate_shape()
        super().__init__(**kwargs)

    def _validate_shape(self) -> None:
        check_positive_int("image_size", self.image_size)
        if not 32 <= self.image_size <= MAX_IMAGE_SIZE:
            raise ValueError(
                f"image_size must be 32..{MAX_IMAGE_SIZE} (a ResNet trunk downsamples by 32; a larger input "
                f"does not fit in memory); got {self.image_size}"
            )
        check_positive_int("n_spectra", self.n_spectra)
        check_positive_int("spectrum_length", self.spectrum_length)
        self.grid = check_grid(self.grid, self.n_spectra)
        if isinstance(self.modalities, str):
            raise ValueError(f"modalities must be a list such as ['image', 'spectra']; got {self.modalities!r}")
        for modality in self.modalities:
            check_choice("modalities entries", modality, MODALITIES)
        if not self.modalities:
            raise ValueError(f"modalities must name at least one of {list(MODALITIES)}")
        self.modalities = [modality for modality in MODALITIES if modality in self.modalities]
        if self.label_std <= 0:
            raise ValueError(f"label_std must be > 0; got {self.label_std!r}")

    @property
    def explanation_maps(self) -> str | None:
        """Which maps over the micrograph the model returns: `"cells"` (per-cell contributions), `"attention"`
        (a spatial-attention map) or `None`."""
        return None

    @property
    def raw_inputs(self) -> bool:
        """Whether the model normalises its inputs itself (images in [0, 1], spectra as measured)."""
        return False

    @property
    def raw_copies(self) -> bool:
        """Whether the model also reads its inputs before normalisation (`raw_pixel_values`, `raw_spectra`)."""
        return False

    @property
    def fitted_in_closed_form(self) -> bool:
        """Whether the model is fitted in one closed-form step rather than trained by gradient descent."""
        return False


class MetalloNetworkConfig(MetalloConfig):
    r"""
    Fields of the deep regressors (ToyNet, MetalloNet): the width, the spectral encoder's channels, dropout and the
    loss; plus those of [`MetalloConfig`].

    Args:
        hidden_dim (`int`, *optional*, defaults to 128):
            Width of the image and spectral vectors and of what fuses them.
        spectral_channels (`list[int]`, *optional*, defaults to `[16, 32, 64]`):
            Channels of the spectral Conv1d stack (see each model's spectral encoder).
        dropout (`float`, *optional*, defaults to 0.1):
            Dropout probability (where each model applies it is in its docs).
        loss (`str`, *optional*, defaults to `"mse"`):
            Training loss on standardised labels: `"mse"`, `"huber"` or `"l1"`.
        huber_delta (`float`, *optional*, defaults to 1.0):
            Delta of the Huber loss, in standardised label units.
    """

    def __init__(
        self,
        hidden_dim=128,
        spectral_channels=(16, 32, 64),
        dropout=0.1,
        loss="mse",
        huber_delta=1.0,
        **kwargs,
    ):
        self.hidden_dim = hidden_dim
        self.spectral_channels = spectral_channels
        self.dropout = dropout
        self.loss = loss
        self.huber_delta = huber_delta
        check_positive_int("hidden_dim", hidden_dim)
        if not spectral_channels:
            raise ValueError("spectral_channels must list at least one channel count")
        for value in spectral_channels:
            check_positive_int("spectral_channels", value)
        self.spectral_channels = list(spectral_channels)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
        check_choice("loss", loss, LOSS_NAMES)
        if huber_delta <= 0:
            raise ValueError(f"huber_delta must be > 0; got {huber_delta!r}")
        super().__init__(**kwargs)


__all__ = [
    "BACKBONE_NAMES",
    "LOSS_NAMES",
    "MODALITIES",
    "MetalloConfig",
    "MetalloNetworkConfig",
    "check_choice",
    "check_positive_int",
]
