"""The model registry: name -> (config, model); params pick a model with `model.name: metallonet | toynet | classical`.

Each model class registers itself where it is defined, with the :func:`register_model` decorator (as timm's
``_registry.py``); importing :mod:`metallo.models` imports every model module, so :data:`MODELS` is complete
whenever this module is importable. Everything that lists models reads it: the `metallo models` and `metallo
compare` commands, the Auto-class registration, the model loader, the bench and the tests.
"""

import inspect

from transformers import PretrainedConfig, PreTrainedModel

from metallo.errors import did_you_mean

#: name -> (config class, model class), filled by :func:`register_model`.
MODELS: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {}


def register_model(name: str):
    """Class decorator: register a ``PreTrainedModel`` subclass (and its ``config_class``) under ``name``."""

    def register(model_class: type[PreTrainedModel]) -> type[PreTrainedModel]:
        if name in MODELS and MODELS[name][1] is not model_class:
            raise ValueError(f"model name {name!r} is already registered for {MODELS[name][1].__name__}")
        MODELS[name] = (model_class.config_class, model_class)
        return model_class

    return register


def list_models(*, closed_form: bool | None = None) -> list[str]:
    """Names accepted by `create_model`, sorted; ``closed_form=False`` keeps the models trained by gradient
    descent, ``True`` those fitted in closed form."""
    return sorted(
        name
        for name, (config_class, _) in MODELS.items()
        if closed_form is None or config_class().fitted_in_closed_form == closed_form
    )


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
