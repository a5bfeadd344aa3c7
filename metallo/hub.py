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

from metallo.metric_names import METRIC_NAMES
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


#: The Hub's task for the card metadata: one scalar from structured inputs (the Hub has no image + spectra
#: regression task; no Hub widget can run these models either way).
PIPELINE_TAG = "tabular-regression"
LICENSE = "mit"  # the project's (pyproject.toml)


def eval_results(metrics: Mapping[str, Any], split: str, dataset: str) -> list:
    """``huggingface_hub.EvalResult`` entries (the card's ``model-index``) for ``metrics`` on ``split``."""
    from huggingface_hub import EvalResult

    return [
        EvalResult(
            task_type=PIPELINE_TAG,
            dataset_type="metallo",
            dataset_name=dataset,
            dataset_split=split,
            metric_type=metric,
            metric_value=float(metrics[metric]),
            metric_name=f"{'val' if split == 'validation' else split}/{metric}",  # metallo.metric_names
        )
        for metric in METRIC_NAMES
        if isinstance(metrics.get(metric), (int, float))
    ]


def card_data(name: str, results: list, dataset: str):
    """The card's metadata: license, task, library, tags and (with ``results``) the ``model-index``."""
    from huggingface_hub import ModelCardData

    return ModelCardData(
        model_name=f"metallo-{name}",
        license=LICENSE,
        pipeline_tag=PIPELINE_TAG,
        library_name="transformers",
        tags=["metallo", name, "regression", "metallography", "reflectance-spectroscopy"],
        datasets=None,
        eval_results=results or None,
    )


def card_text(config, params: Mapping[str, Any], summary: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """The model card's Markdown (YAML metadata, then the sections); deterministic for identical inputs.

    The train stage writes it, so its ``model-index`` holds the validation metrics; :func:`add_test_results`
    adds the test split's from ``metrics/eval.json`` (``models/model`` is the train stage's DVC output:
    ``evaluate`` does not rewrite it)."""
    from huggingface_hub import ModelCard

    name = str((params.get("model") or {}).get("name") or getattr(config, "model_type", "model"))
    val = summary.get("val") or {}
    metadata = card_data(name, eval_results(val, "validation", dataset_name(params)), dataset_name(params))
    rows, cols = (int(v) for v in config.grid)
    model_params = {k: v for k, v in (params.get("model") or {}).items()}
    train_params = {k: v for k, v in (params.get("train") or {}).items() if k in CARD_TRAIN_KEYS}
    metrics = {f"val/{k}": val[k] for k in METRIC_NAMES if k in val}
    synthetic = "synthetic" in str((params.get("ingest") or {}).get("raw_dir", ""))
    card = ModelCard.from_template(
        metadata,
        template_str=CARD_TEMPLATE,
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
    return card.content


def dataset_name(params: Mapping[str, Any]) -> str:
    """The data set's name in the card: the raw data folder's name (``synthetic``: the demo set)."""
    raw = str((params.get("ingest") or {}).get("raw_dir", "") or "data")
    return Path(raw).name or raw


def add_test_results(model_dir: str | os.PathLike, report: Mapping[str, Any], out: str | os.PathLike | None = None):
    """The model card of ``model_dir`` with the test metrics of ``report`` (``metrics/eval.json``) added to its
    ``model-index`` (and, as a table, to its Metrics section); saved to ``out`` when given (e.g. a copy of the
    folder you push to the Hub). Returns the :class:`huggingface_hub.ModelCard`."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(Path(model_dir) / CARD_FILE)
    test = report.get("test") or {}
    dataset = (card.data.eval_results or [None])[0]
    results = [r for r in (card.data.eval_results or []) if r.dataset_split != "test"]
    card.data.eval_results = results + eval_results(test, "test", dataset.dataset_name if dataset else "data")
    rows = [("model", test), *((f"{b} baseline", v) for b, v in (report.get("baseline") or {}).items())]
    table = ["| test split | RMSE | MAE | R² |", "|---|---:|---:|---:|"] + [
        f"| {label} | {_value(v.get('rmse'))} | {_value(v.get('mae'))} | {_value(v.get('r2'))} |" for label, v in rows
    ]
    heading = "Test metrics are computed after training"
    if heading in card.text:
        head, _, tail = card.text.partition(heading)
        card.text = head + "\n".join(table) + "\n\n" + heading + tail
    if out is not None:
        card.save(out)
    return card


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
