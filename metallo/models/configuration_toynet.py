"""ToyNet model configuration"""

from .configuration_common import BACKBONE_NAMES, MetalloNetworkConfig, check_choice, check_positive_int


class ToyNetConfig(MetalloNetworkConfig):
    r"""
    Configuration of a [`ToyNetModel`], the baseline regressor: a pooled ResNet image vector and a mean-pooled
    spectral vector, concatenated into an MLP (dropout before its last layer). The fields below plus those of
    [`MetalloNetworkConfig`] and [`MetalloConfig`].

    Args:
        backbone (`str`, *optional*, defaults to `"resnet18"`):
            torchvision ResNet trunk, `"resnet18"` or `"resnet50"`, built with `weights=None`.
        backbone_weights (`str`, *optional*):
            Local `.safetensors` or `.pth` torchvision ResNet state dict loaded into the trunk when the model is
            first built (not by `from_pretrained`). Nothing is downloaded.
        spectral_pool_size (`int`, *optional*, defaults to 8):
            Number of wavelength bins each spectrum is pooled to before projection.
    """

    model_type = "metallo_toynet"

    def __init__(self, backbone="resnet18", backbone_weights=None, spectral_pool_size=8, **kwargs):
        self.backbone = backbone
        self.backbone_weights = backbone_weights
        self.spectral_pool_size = spectral_pool_size
        check_choice("backbone", backbone, BACKBONE_NAMES)
        check_positive_int("spectral_pool_size", spectral_pool_size)
        super().__init__(**kwargs)


__all__ = ["ToyNetConfig"]
