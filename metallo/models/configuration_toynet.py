"""ToyNet model configuration"""

from transformers import PretrainedConfig

from .common import validate_config


class ToyNetConfig(PretrainedConfig):
    r"""
    Configuration of a [`ToyNetModel`], the baseline regressor: a pooled ResNet image vector and a mean-pooled
    spectral vector, concatenated into an MLP.

    Args:
        image_size (`int`, *optional*, defaults to 128):
            Side of the square input micrograph (128 is the CPU demo resolution, 300 the full one).
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
            Branches to build: `["image", "spectra"]`, `["image"]` or `["spectra"]` (ablations).
        hidden_dim (`int`, *optional*, defaults to 128):
            Width of each branch's vector and of the MLP.
        spectral_channels (`list[int]`, *optional*, defaults to `[16, 32, 64]`):
            Channels of the spectral Conv1d stack: a stride-4 stem then one stride-2 block per further entry.
        spectral_pool_size (`int`, *optional*, defaults to 8):
            Number of wavelength bins each spectrum is pooled to before projection.
        dropout (`float`, *optional*, defaults to 0.1):
            Dropout before the last MLP layer.
        loss (`str`, *optional*, defaults to `"mse"`):
            Training loss on standardised labels: `"mse"`, `"huber"` or `"l1"`.
        huber_delta (`float`, *optional*, defaults to 1.0):
            Delta of the Huber loss, in standardised label units.
        label_mean (`float`, *optional*, defaults to 0.0):
            Label mean used to standardise targets (set by the training stage).
        label_std (`float`, *optional*, defaults to 1.0):
            Label standard deviation used to standardise targets (set by the training stage).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal init of linear layers.
    """

    model_type = "metallo_toynet"

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
        self.dropout = dropout
        self.loss = loss
        self.huber_delta = huber_delta
        self.label_mean = label_mean
        self.label_std = label_std
        self.initializer_range = initializer_range
        validate_config(self)
        super().__init__(**kwargs)


__all__ = ["ToyNetConfig"]
