"""Metallo regressors as Hugging Face models.

Importing this package registers every model of :data:`~metallo.models.registry.MODELS` with ``AutoConfig`` and
``AutoModel``, and :class:`~metallo.processing.MetalloProcessor` with ``AutoImageProcessor`` for each of them:
the one place Metallo registers anything with ``transformers``.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel

from metallo.processing import MetalloProcessor

from .configuration_classical import ClassicalConfig
from .configuration_metallonet import MetalloNetConfig
from .configuration_toynet import ToyNetConfig
from .modeling_classical import ClassicalModel
from .modeling_common import RegressionOutput
from .modeling_metallonet import MetalloNetModel
from .modeling_toynet import ToyNetModel
from .registry import (
    MODELS,
    config_fields,
    create_config,
    create_model,
    get_config_class,
    get_model_class,
    list_models,
)
from .summary import format_summary, model_summary

for _config_class, _model_class in MODELS.values():
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModel.register(_config_class, _model_class, exist_ok=True)
    AutoImageProcessor.register(
        _config_class,
        image_processor_classes={"torchvision": MetalloProcessor, "pil": MetalloProcessor},
        exist_ok=True,
    )

__all__ = [
    "ClassicalConfig",
    "ClassicalModel",
    "MetalloNetConfig",
    "MetalloNetModel",
    "RegressionOutput",
    "ToyNetConfig",
    "ToyNetModel",
    "config_fields",
    "create_config",
    "create_model",
    "format_summary",
    "get_config_class",
    "get_model_class",
    "list_models",
    "model_summary",
]
