"""Metallo regressors as Hugging Face models; importing this package registers them with AutoConfig / AutoModel."""

from transformers import AutoConfig, AutoModel

from .configuration_classical import ClassicalConfig
from .configuration_metallonet import MetalloNetConfig
from .configuration_toynet import ToyNetConfig
from .modeling_classical import ClassicalModel
from .modeling_common import RegressionOutput
from .modeling_metallonet import MetalloNetModel
from .modeling_toynet import ToyNetModel
from .registry import config_fields, create_config, create_model, get_config_class, get_model_class, list_models
from .summary import format_summary, model_summary

for _config_class, _model_class in (
    (ToyNetConfig, ToyNetModel),
    (MetalloNetConfig, MetalloNetModel),
    (ClassicalConfig, ClassicalModel),
):
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModel.register(_config_class, _model_class, exist_ok=True)

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
