"""ToyNet model configuration"""

from .configuration_common import MetalloNetworkConfig


class ToyNetConfig(MetalloNetworkConfig):
    r"""
    Configuration of a [`ToyNetModel`], the baseline regressor: a pooled ResNet image vector and a mean-pooled
    spectral vector, concatenated into an MLP (dropout before its last layer). It has no fields of its own: those of
    [`MetalloNetworkConfig`] and [`MetalloConfig`] describe it.
    """

    model_type = "metallo_toynet"

    def __init__(self, **kwargs):  # explicit, so transformers does not generate a field-less one
        super().__init__(**kwargs)


__all__ = ["ToyNetConfig"]
