"""Loading a trained model directory: the model and its input processor.

Loading never runs code from the model folder: every ``from_pretrained`` passes
``trust_remote_code=False`` and a config that points at custom code (``auto_map``) is refused
before transformers sees it, so nothing prompts and nothing is imported. Weights are read only
from ``model.safetensors``; a corrupt weights file or a ``preprocessor_config.json`` Metallo did
not write is reported as a :class:`MetalloError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

import metallo.models
from metallo.errors import MetalloError
from metallo.processing import MetalloProcessor


def load_model(directory: str | os.PathLike, device: str | torch.device | None = None):
    """Load ``(model, processor)`` from a directory written by the train stage (safetensors only)."""
    from transformers import AutoConfig, AutoModel

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise MetalloError(
            f"{directory} is not a model directory (no config.json); train one with `dvc repro train` "
            "or pass the folder the train stage wrote (models/model)."
        )
    _refuse_custom_code(directory)
    try:
        config = AutoConfig.from_pretrained(directory, trust_remote_code=False)
    except (ValueError, KeyError, OSError) as err:
        raise MetalloError(
            f"{directory}/config.json does not describe a Metallo model ({err}). "
            f"Known models: {', '.join(metallo.models.list_models())}."
        ) from None
    metallo_types = {metallo.models.get_config_class(name).model_type for name in metallo.models.list_models()}
    if getattr(config, "model_type", None) not in metallo_types:
        raise MetalloError(
            f"{directory} holds a {config.model_type!r} model, not a Metallo model "
            f"({', '.join(metallo.models.list_models())}); pass the folder Metallo's train stage "
            "wrote (models/model), or retrain with `dvc repro train`."
        )
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise MetalloError(f"{directory} has no model.safetensors; Metallo loads weights only from safetensors files.")
    processor = load_processor(directory)
    _check_processor_matches(directory, processor, config)
    try:
        model = AutoModel.from_pretrained(directory, config=config, use_safetensors=True, trust_remote_code=False)
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for a damaged file
        reason = " ".join(str(err).split())[:300]
        raise MetalloError(
            f"{weights} cannot be loaded ({type(err).__name__}: {reason}); the file is corrupt, "
            "truncated or not from this model's config. Copy the model folder again, or retrain "
            "with `dvc repro train`."
        ) from None
    model.eval()
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device), processor


def _check_processor_matches(directory: Path, processor: MetalloProcessor, config) -> None:
    """The processor feeds the model what its config expects: the image side and the spectrum length."""
    for field, theirs, ours in (
        ("image_size", processor.image_size, config.image_size),
        ("spectrum length (len(spectra_mean))", len(processor.spectra_mean), config.spectrum_length),
    ):
        if theirs != ours:
            raise MetalloError(
                f"{directory}/preprocessor_config.json has {field} {theirs}, but {directory}/config.json "
                f"describes a model for {ours}; the two files come from different models. Copy the model "
                "folder again or retrain."
            )


def _refuse_custom_code(directory: Path) -> None:
    """Refuse a config.json that asks transformers to import code from the folder (``auto_map``)."""
    import json

    try:
        raw = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MetalloError(
            f"{directory}/config.json is not valid JSON ({err}); pass the folder Metallo's train "
            "stage wrote (models/model), or retrain with `dvc repro train`."
        ) from None
    if not isinstance(raw, dict):
        raise MetalloError(
            f"{directory}/config.json is not a model config (a JSON object); pass the folder "
            "Metallo's train stage wrote (models/model)."
        )
    if raw.get("auto_map") or raw.get("custom_pipelines"):
        known = ", ".join(metallo.models.list_models())
        raise MetalloError(
            f"{directory}/config.json (model_type {raw.get('model_type')!r}) points at custom Python "
            "code in the model folder (auto_map); Metallo never runs code from a model folder. "
            f"Pass a folder written by Metallo's train stage ({known})."
        )


def load_processor(directory: str | os.PathLike) -> MetalloProcessor:
    """The folder's ``preprocessor_config.json``, with a clear error for unknown or missing keys."""
    import dataclasses
    import json

    path = Path(directory) / "preprocessor_config.json"
    if not path.is_file():
        return MetalloProcessor.from_pretrained(directory)  # raises its own MetalloError
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MetalloError(f"{path} is not valid JSON ({err}); copy the model folder again or retrain.") from None
    fields = [f.name for f in dataclasses.fields(MetalloProcessor) if not f.name.startswith("_")]
    required = [
        f.name
        for f in dataclasses.fields(MetalloProcessor)
        if not f.name.startswith("_") and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if not isinstance(data, dict):
        raise MetalloError(f"{path} must hold a JSON object with the keys {', '.join(fields)}.")
    kind = data.pop("image_processor_type", MetalloProcessor.__name__)  # absent in files written before it was kept
    if kind != MetalloProcessor.__name__:
        raise MetalloError(
            f"{path} describes a {kind!r}, not a MetalloProcessor; pass the folder Metallo's train "
            "stage wrote (models/model)."
        )
    unknown = sorted(set(data) - set(fields))
    missing = [k for k in required if k not in data]
    if unknown or missing:
        problems = ([f"unknown key(s) {', '.join(map(repr, unknown))}"] if unknown else []) + (
            [f"missing key(s) {', '.join(map(repr, missing))}"] if missing else []
        )
        raise MetalloError(
            f"{path} has {' and '.join(problems)}; a Metallo preprocessor config has exactly "
            f"{', '.join(fields)}. Fix the file, or use the folder the train stage wrote "
            "(models/model)."
        )
    try:
        return MetalloProcessor(**data)
    except (TypeError, ValueError, MetalloError) as err:
        raise MetalloError(f"{path} holds invalid values ({err}); copy the model folder again or retrain.") from None
