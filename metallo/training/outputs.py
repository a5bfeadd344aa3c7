"""What the train stage leaves behind: the model folder, ``metrics/train.json``, the run file, the MLflow run.

The model folder (``models/model``) holds config.json, model.safetensors, the preprocessor, the interval
calibration and the model card; ``models/run.json`` (untracked) names the MLflow run that ``evaluate``
logs into.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metallo.data.dataset import MetalloDataset
from metallo.hub import write_model_card
from metallo.io import atomic_path, write_json
from metallo.layout import Paths
from metallo.metrics import METRIC_NAMES
from metallo.prediction import predict_arrays
from metallo.processing import MetalloProcessor
from metallo.tracking import lineage
from metallo.tracking.console import without_mlflow_hints
from metallo.tracking.tracker import Tracker
from metallo.training.live import finish
from metallo.uncertainty import save_calibration

with without_mlflow_hints():  # defining the pyfunc class warns about type hints: they do not apply
    from metallo.prediction.mlflow_model import log_pyfunc_model


def training_summary(
    model_name: str,
    datasets: dict[str, MetalloDataset],
    epochs: float,
    steps: int,
    val_metrics: dict[str, float],
    **fitted: float,
) -> dict[str, Any]:
    """``metrics/train.json``: the model, how long it trained, the split sizes, what the fit chose (``fitted``,
    e.g. the ridge penalty of a closed-form model) and the validation metrics."""
    return {
        "model": model_name,
        "epochs": float(epochs),
        "steps": int(steps),
        "train_samples": len(datasets["train"]),
        "val_samples": len(datasets["val"]),
        **fitted,
        **{f"val_{m}": float(val_metrics[m]) for m in METRIC_NAMES},
    }


def input_example(dataset: MetalloDataset) -> dict[str, np.ndarray]:
    """The first sample of ``dataset`` as the pyfunc model's input (uint8 image, raw spectra)."""
    images, spectra = dataset.arrays()
    return {"pixel_values": images[:1].numpy(), "spectra": spectra[:1].numpy()}


def save_model_folder(
    model, processor: MetalloProcessor, val: MetalloDataset, val_pred: np.ndarray, card: dict[str, Any], paths: Paths
) -> None:
    """Write the model, its processor, the interval calibration (from ``val_pred``) and the model card (from
    ``card``: ``params`` and ``summary``) into ``paths.model``, all at once."""
    with atomic_path(paths.model) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        save_calibration(tmp, val.labels, val_pred)
        write_model_card(tmp, model.config, card["params"], card["summary"], paths)


def log_outputs(tracker: Tracker, summary: dict[str, Any], val: MetalloDataset, paths: Paths) -> None:
    """Tag the run with the weights' digest, write the run file, log metrics, artifacts and the pyfunc model."""
    digest = lineage.model_digest(paths.model)
    tracker.set_tags({lineage.MODEL_DIGEST_TAG: digest})
    run = {"run_id": tracker.run_id if tracker.enabled else None, "experiment": tracker.experiment}
    write_json(paths.run_file, {**run, "model_digest": digest})
    logged = ("val_", "start_val_", "trained_val_", "ridge_alpha")
    tracker.log_metrics({k: v for k, v in summary.items() if k.startswith(logged)})
    tracker.set_tags({f"metallo.{key}": summary[key] for key in ("validation", "kept") if key in summary})
    tracker.log_artifact(paths.train_metrics, "metrics")
    tracker.log_artifact(paths.model, "model")
    with without_mlflow_hints():
        log_pyfunc_model(tracker, paths.model, input_example(val))
    tracker.finish()


def save_outputs(
    model,
    processor: MetalloProcessor,
    val: MetalloDataset,
    summary: dict[str, Any],
    live,
    tracker: Tracker,
    paths: Paths,
    params: dict,
    val_pred: np.ndarray | None = None,
) -> dict[str, Any]:
    """Save the model folder, ``metrics/train.json`` and the run file; log them to MLflow; return ``summary``.

    ``live`` (the dvclive logger) is ended here. ``val_pred``: the model's validation predictions when the
    caller has them (else computed here, for the interval calibration).
    """
    if val_pred is None:
        val_pred, _ = predict_arrays(model.eval(), processor, *(array.numpy() for array in val.arrays()))
    save_model_folder(model, processor, val, val_pred, {"params": params, "summary": summary}, paths)
    write_json(paths.train_metrics, summary)
    finish(live)
    log_outputs(tracker, summary, val, paths)
    print(f"train: best validation RMSE {summary['val_rmse']:.4g}, R² {summary['val_r2']:.3f} -> {paths.model}")
    if tracker.run_url:
        print(f"train: MLflow run {tracker.run_url}")
    return summary
