"""What the train stage leaves behind: the model folder, ``metrics/train.json``, the run file, the MLflow run.

The model folder (``models/model``) holds config.json, model.safetensors, the preprocessor, the interval
calibration and the model card; ``models/run.json`` (untracked) names the MLflow run that ``evaluate``
logs into.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from metallo import metric_names as names
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


def evaluation_outputs(paths: Paths) -> tuple[Path, ...]:
    """The evaluate stage's outputs: the test split's view of the previous model."""
    return (paths.eval_metrics, paths.predictions, paths.metrics / "figures")


def clear_evaluation(paths: Paths) -> list[str]:
    """Remove the previous model's evaluation (``metrics/eval.json``, ``predictions.csv``, ``figures/``) as a
    new training starts; return what was removed.

    ``dvc exp show`` and ``dvc metrics show`` read the workspace while ``dvc exp run`` trains: without this, the
    running experiment's row shows the previous model's test metrics as its own. DVC removes a stage's own
    outputs before it runs that stage, but these belong to ``evaluate``, which runs only after ``train``; the
    stage that makes them stale removes them. ``evaluate`` writes them again for the new model."""
    removed = []
    for path in evaluation_outputs(paths):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path.name)
    return removed


def training_summary(
    model_name: str,
    datasets: dict[str, MetalloDataset],
    epochs: float,
    steps: int,
    val_metrics: dict[str, float],
    selection: dict[str, Any] | None = None,
    **fitted: Any,
) -> dict[str, Any]:
    """``metrics/train.json``: the model, how long it trained, the split sizes, what the fit chose (``fitted``,
    e.g. the ridge penalty of a closed-form model), what was kept (``selection``: ``kept``, and the start's and
    the trained weights' validation metric) and the kept model's validation metrics under ``val``
    (``val.rmse``; MLflow ``val/rmse``, see :mod:`metallo.metric_names`)."""
    selection = dict(selection or {})
    kept = {"kept": selection.pop("kept")} if "kept" in selection else {}
    return {
        "model": model_name,
        "epochs": float(epochs),
        "steps": int(steps),
        "train_samples": len(datasets["train"]),
        "val_samples": len(datasets["val"]),
        **fitted,
        **kept,
        "val": {**{m: float(val_metrics[m]) for m in METRIC_NAMES}, **selection},
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
    tracker.log_metrics(names.flat({"val": summary["val"]}))  # the kept model's (the curve is val_curve/*)
    if "ridge_alpha" in summary:
        tracker.log_metrics({"fit/ridge_alpha": summary["ridge_alpha"]})
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
    val = summary["val"]
    print(f"train: kept model's validation RMSE {val['rmse']:.4g}, R² {val['r2']:.3f} -> {paths.model}")
    if tracker.run_url:
        print(f"train: MLflow run {tracker.run_url}")
    return summary
