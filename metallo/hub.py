"""The model folder as a Hugging Face Hub repository: a model card beside the weights.

``models/model`` holds what ``transformers`` needs (``config.json``, ``model.safetensors``,
``preprocessor_config.json``) plus Metallo's ``calibration.json`` and a model card (``README.md``, written
by :func:`write_model_card` when the train stage saves the model): data, params, validation metrics,
intended use and limits. ``model.push_to_hub(...)`` and ``processor.push_to_hub(...)`` (or
``huggingface_hub.upload_folder``) upload a folder that loads with::

    pip install metallo            # this project: it defines the model and processor classes
    import metallo.models          # registers them with the transformers Auto classes
    from transformers import AutoImageProcessor, AutoModel
    model = AutoModel.from_pretrained("you/metallo-dos")
    processor = AutoImageProcessor.from_pretrained("you/metallo-dos")

Nothing is executed from the repository (no ``auto_map``, no ``trust_remote_code``): the code comes from
the installed ``metallo`` package.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metallo.model_card import CARD_TEMPLATE
from metallo.tracking.lineage import data_hash

CARD_FILE = "README.md"
SYNTHETIC_NOTE = (
    "The data are Metallo's synthetic demo set, not measurements: this model demonstrates the pipeline only."
)
#: ``train:`` keys shown in the card (the whole params file is in the MLflow run and in git).
CARD_TRAIN_KEYS = (
    "num_train_epochs",
    "per_device_train_batch_size",
    "learning_rate",
    "weight_decay",
    "lr_scheduler_type",
    "warmup_steps",
    "seed",
    "augment",
    "early_stopping_patience",
)


def _table(rows: Mapping[str, Any]) -> str:
    lines = ["| key | value |", "|---|---|"]
    lines += [f"| `{key}` | {_value(value)} |" for key, value in rows.items()]
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"`{value}`" if isinstance(value, (list, tuple, dict)) else str(value)


def card_text(config, params: Mapping[str, Any], summary: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """The model card's Markdown (YAML metadata, then the sections); deterministic for identical inputs."""
    from huggingface_hub import ModelCardData

    name = str((params.get("model") or {}).get("name") or getattr(config, "model_type", "model"))
    metadata = ModelCardData(
        library_name="transformers", tags=["metallo", name, "regression", "metallography", "reflectance-spectroscopy"]
    )
    rows, cols = (int(v) for v in config.grid)
    model_params = {k: v for k, v in (params.get("model") or {}).items()}
    train_params = {k: v for k, v in (params.get("train") or {}).items() if k in CARD_TRAIN_KEYS}
    metrics = {k: summary[k] for k in ("val_mae", "val_rmse", "val_r2", "val_pearson") if k in summary}
    synthetic = "synthetic" in str((params.get("ingest") or {}).get("raw_dir", ""))
    return CARD_TEMPLATE.substitute(
        metadata=metadata.to_yaml(),
        name=name,
        type_name=type_name(config),
        n_spectra=config.n_spectra,
        spectrum_length=config.spectrum_length,
        rows=rows,
        cols=cols,
        data_table=_table(data),
        label_mean=_value(float(config.label_mean)),
        label_std=_value(float(config.label_std)),
        synthetic_note=SYNTHETIC_NOTE if synthetic else "",
        model_table=_table(model_params),
        train_table=_table(train_params),
        metrics_table=_table(metrics),
        val_samples=summary.get("val_samples", "?"),
        train_samples=summary.get("train_samples", "?"),
    )


def type_name(config) -> str:
    """The model class name the config's ``architectures`` records (or the model type)."""
    return (getattr(config, "architectures", None) or [getattr(config, "model_type", "model")])[0]


def data_card(params: Mapping[str, Any], summary: Mapping[str, Any], data_digest: str) -> dict[str, Any]:
    """The "Training data" rows: where the data came from, its digest, the split, the shape."""
    split = params.get("split") or {}
    convert = params.get("convert") or {}
    return {
        "raw data folder (ingest.raw_dir)": (params.get("ingest") or {}).get("raw_dir", "?"),
        "processed data + split digest": data_digest,
        "train / validation samples": f"{summary.get('train_samples', '?')} / {summary.get('val_samples', '?')}",
        "training slices (split.train_slices)": split.get("train_slices", "?"),
        "test slices (split.test_slices)": split.get("test_slices", "?"),
        "image geometry (convert.fit, convert.crop)": f"{convert.get('fit', '?')}, {convert.get('crop', '?')}",
    }


def write_model_card(
    directory: str | os.PathLike, config, params: Mapping[str, Any], summary: Mapping[str, Any], paths
) -> Path:
    """Write ``README.md`` (the model card) into the model folder ``directory``."""
    from huggingface_hub import ModelCard

    path = Path(directory) / CARD_FILE
    ModelCard(card_text(config, params, summary, data_card(params, summary, data_hash(paths)))).save(path)
    return path
