"""Name -> (config, model) registry, so params pick a model with `model.name: toynet | metallonet`."""

import inspect

from transformers import PretrainedConfig, PreTrainedModel

from metallo.errors import did_you_mean

from .configuration_classical import ClassicalConfig
from .configuration_metallonet import MetalloNetConfig
from .configuration_toynet import ToyNetConfig
from .modeling_classical import ClassicalModel
from .modeling_metallonet import MetalloNetModel
from .modeling_toynet import ToyNetModel

MODELS: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    "toynet": (ToyNetConfig, ToyNetModel),
    "metallonet": (MetalloNetConfig, MetalloNetModel),
    "classical": (ClassicalConfig, ClassicalModel),
}


def list_models() -> list[str]:
    """Names accepted by `create_model`."""
    return sorted(MODELS)


def _lookup(name: str) -> tuple[type[PretrainedConfig], type[PreTrainedModel]]:
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; available models: {', '.join(list_models())}")
    return MODELS[name]


def get_config_class(name: str) -> type[PretrainedConfig]:
    """Config class registered under `name`."""
    return _lookup(name)[0]


def get_model_class(name: str) -> type[PreTrainedModel]:
    """Model class registered under `name`."""
    return _lookup(name)[1]


def config_fields(name: str) -> list[str]:
    """Config fields of model `name`, i.e. the override keys `create_config` / `create_model` accept."""
    fields: list[str] = []
    for cls in get_config_class(name).__mro__:  # the model's own fields first, then its base configs'
        if cls is PretrainedConfig:
            break
        if "__init__" in vars(cls):
            parameters = inspect.signature(cls.__init__).parameters.values()
            fields += [
                p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in ("self", *fields)
            ]
    return fields


def create_config(name: str, **overrides) -> PretrainedConfig:
    """Config of model `name` with `overrides` applied to its defaults.

    Raises:
        ValueError: for an unknown model name, an unknown field (with a close-match suggestion) or an invalid value.
    """
    config_class = get_config_class(name)
    fields = config_fields(name)
    for key in overrides:
        if key not in fields:
            raise ValueError(
                f"Unknown config field {key!r} for model {name!r}.{did_you_mean(key, fields)} "
                f"Valid fields: {', '.join(fields)}"
            )
    return config_class(**overrides)


def create_model(name: str, **overrides) -> PreTrainedModel:
    """Builds model `name` (randomly initialised, or with `backbone_weights`) from its config plus `overrides`."""
    return get_model_class(name)(create_config(name, **overrides))
