"""The ``evaluate`` stage: test-split metrics, predictions and figures, logged into the train run.

MLflow: the test metrics are logged into the run that trained the model (found through the untracked
``models/run.json``, or by the weights' digest when that file is missing or belongs to another model), linked
to the run's LoggedModel and to the test dataset; with ``tracking.register`` the model is registered (see
:mod:`metallo.training.lineage`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from metallo import figures
from metallo.baselines import baseline_metrics
from metallo.data.convert import grid_extents
from metallo.data.dataset import load_splits
from metallo.errors import MetalloError
from metallo.io import read_json, write_csv, write_json
from metallo.layout import PATHS, Paths, load_stats, wavelength_range
from metallo.params import section
from metallo.prediction import load_model, predict_arrays
from metallo.training import lineage
from metallo.training.arguments import tracks_mlflow
from metallo.training.metrics import regression_metrics
from metallo.training.progress import quiet_libraries
from metallo.training.tracking import TRACKING_KEYS, Tracker
from metallo.uncertainty import conformal_halfwidth, coverage, load_calibration

EVALUATE_KEYS = ("batch_size", "attention_examples", "interval")


def _finite_or_none(metrics: dict[str, float]) -> dict[str, float | None]:
    """JSON has no NaN: undefined metrics (e.g. Pearson r of a constant) become null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def prediction_interval(paths: Paths, y_true: np.ndarray, y_pred: np.ndarray, level: float) -> dict[str, Any]:
    """Split-conformal interval bounds for ``y_pred`` and the coverage they reach on ``y_true``."""
    residuals = load_calibration(paths.model)
    halfwidth = conformal_halfwidth(residuals, level) if residuals is not None else math.nan
    lower, upper = y_pred - halfwidth, y_pred + halfwidth
    summary = {
        "level": level,
        "halfwidth": halfwidth,
        "coverage": coverage(y_true, lower, upper),
        "calibration_n": int(len(residuals)) if residuals is not None else 0,
    }
    return {"summary": _finite_or_none(summary), "lower": lower.astype(np.float64), "upper": upper.astype(np.float64)}


def run_evaluate(params: dict, paths: Paths = PATHS) -> dict[str, Any]:
    """Predict the test split. Reads ``evaluate``, ``tracking``, ``train.report_to``, ``data.wavelengths``."""
    quiet_libraries()
    cfg = section(params, "evaluate", EVALUATE_KEYS)
    wavelengths = wavelength_range(params)
    model, processor = load_model(paths.model)
    splits = load_splits(paths)
    test = splits["test"]
    if len(test) == 0:
        raise MetalloError("the test split is empty: no sample has a slice_id in split.test_slices.")
    images, spectra = test.arrays()
    wants_attention = getattr(model.config, "explanation_maps", False)
    y_pred, attention = predict_arrays(
        model,
        processor,
        images.numpy(),
        spectra.numpy(),
        batch_size=int(cfg["batch_size"]),
        return_attention=wants_attention,
    )
    y_true = test.labels.astype(np.float64)
    metrics = regression_metrics(y_true, y_pred)
    baselines = baseline_metrics(load_stats(paths), splits["train"], test, model.config, processor)
    interval = prediction_interval(paths, y_true, y_pred, float(cfg.get("interval", 0.9)))
    report = {
        **_finite_or_none(metrics),
        "n": int(len(y_true)),
        "interval": interval["summary"],
        "baselines": {name: _finite_or_none(values) for name, values in baselines.items()},
    }
    write_json(paths.metrics / "eval.json", report)
    y_pred = y_pred.astype(np.float64)
    write_csv(
        paths.metrics / "predictions.csv",
        pd.DataFrame(
            {
                "sample_id": test.sample_ids,
                "y_true": y_true,
                "y_pred": y_pred,
                "residual": y_pred - y_true,
                "y_lower": interval["lower"],
                "y_upper": interval["upper"],
            }
        ),
        float_format="%.6g",
    )

    out = paths.metrics / "figures"
    extents = grid_extents(paths.processed)[test.index]  # where each test sample's grid lies in its image
    written = [
        figures.predicted_vs_true(y_true, y_pred, metrics, out / "pred_vs_true.png"),
        figures.residual_histogram(y_true, y_pred, out / "residuals.png"),
        figures.residuals_vs_true(y_true, y_pred, out / "residuals_vs_true.png"),
        figures.spectra_on_grid(
            images[0].numpy(),
            spectra[0].numpy(),
            tuple(model.config.grid),
            test.sample_ids[0],
            out / "spectra_grid.png",
            wavelengths=wavelengths,
            extent=tuple(extents[0]),
        ),
    ]
    if attention is not None:
        k = min(int(cfg["attention_examples"]), len(y_true))
        if getattr(model.config, "fusion", None) == "grid":
            written.append(
                figures.cell_contribution_montage(
                    images[:k].numpy(),
                    attention[:k],
                    extents[:k],
                    y_true[:k],
                    y_pred[:k],
                    test.sample_ids[:k],
                    out / "cells.png",
                )
            )
        else:
            written.append(
                figures.attention_montage(
                    images[:k].numpy(),
                    attention[:k],
                    y_true[:k],
                    y_pred[:k],
                    test.sample_ids[:k],
                    out / "attention.png",
                    model_image_size=int(model.config.image_size),
                )
            )
    for stale in set(out.glob("*.png")) - set(written):
        stale.unlink()

    log_to_mlflow(params, paths, metrics, baselines, interval["summary"], test)
    print(
        f"evaluate: test R² {metrics['r2']:.3f}, RMSE {metrics['rmse']:.4g}, MAE {metrics['mae']:.4g}, "
        f"n={len(y_true)}; "
        f"classical baseline R² {baselines['classical']['r2']:.3f}, mean baseline RMSE "
        f"{baselines['mean']['rmse']:.4g} -> {paths.metrics / 'eval.json'}"
    )
    return report


def open_train_run(params: dict, paths: Paths) -> Tracker:
    """The MLflow run that trained ``paths.model`` (a disabled tracker when there is none).

    ``models/run.json`` names it when it was written for these weights (a ``run_id`` of null: trained with
    MLflow off). Otherwise (DVC restored the model from its run cache, or the file is gone) the run is the
    newest one tagged with the weights' digest.
    """
    experiment = section(params, "tracking", TRACKING_KEYS)["experiment"]
    digest = lineage.model_digest(paths.model)
    run = read_json(paths.run_file) if paths.run_file.is_file() else {}
    if run.get("model_digest") == digest:
        return Tracker(experiment, enabled=bool(run.get("run_id")), run_id=run.get("run_id"))
    if not tracks_mlflow(params.get("train") or {}):
        return Tracker(experiment, enabled=False)
    tracker = Tracker(experiment)
    tracker.run_id = lineage.find_run(tracker, digest)
    if tracker.run_id is None:
        if tracker.enabled:
            print(
                f"evaluate: no MLflow run in {tracker.uri} trained this model; the test metrics are in "
                f"{paths.metrics / 'eval.json'} only"
            )
        tracker.enabled = False
    return tracker


def log_to_mlflow(params: dict, paths: Paths, metrics: dict, baselines: dict, interval: dict, test) -> None:
    """Test metrics (linked to the LoggedModel and the test dataset), baselines, artifacts; the registry."""
    tracker = open_train_run(params, paths)
    tracker.sweep_stale_runs()
    if not tracker.enabled:
        return
    model_id = lineage.find_logged_model(tracker)
    run = tracker.call("read the run", lambda: tracker.client().get_run(tracker.run_id))
    data_digest = run.data.tags.get("data.hash", "") if run else ""
    datasets = tracker.call(
        "describe the test dataset", lambda: lineage.split_datasets({"test": test}, paths.processed, data_digest)
    )
    test_metrics = {f"test_{k}": v for k, v in metrics.items()}
    lineage.log_model_metrics(tracker, test_metrics, model_id, (datasets or {}).get("test"))
    others = {f"{name}_baseline_test_{k}": v for name, values in baselines.items() for k, v in values.items()}
    tracker.log_metrics(lineage.unlogged(tracker, {**others, **{f"test_interval_{k}": v for k, v in interval.items()}}))
    tracker.log_artifact(paths.metrics / "figures", "figures")
    for name in ("eval.json", "train.json", "ingest.json", "split.json"):
        tracker.log_artifact(paths.metrics / name, "metrics")
    tracker.log_artifact(paths.metrics / "predictions.csv", "metrics")
    name = (section(params, "tracking", TRACKING_KEYS).get("register") or "").strip()
    if name and model_id:
        version = lineage.register_model(tracker, name, model_id, test_metrics)
        if version:
            print(
                f"evaluate: registered as {name!r} version {version} in the MLflow Model Registry "
                f"(alias {lineage.BEST_ALIAS!r} = lowest test RMSE)"
            )
