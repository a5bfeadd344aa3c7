"""The ``evaluate`` stage: test-split metrics, predictions and figures, logged into the train run."""
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
from metallo.prediction import load_model, predict_arrays
from metallo.io import read_json, write_csv, write_json
from metallo.layout import PATHS, Paths, load_stats
from metallo.params import section
from metallo.training.metrics import regression_metrics
from metallo.training.tracking import Tracker
from metallo.training.train import RUN_FILE
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
    summary = {"level": level, "halfwidth": halfwidth, "coverage": coverage(y_true, lower, upper),
               "calibration_n": int(len(residuals)) if residuals is not None else 0}
    return {"summary": _finite_or_none(summary), "lower": lower.astype(np.float64), "upper": upper.astype(np.float64)}


def run_evaluate(params: dict, paths: Paths = PATHS) -> dict[str, Any]:
    """Predict the test split. Reads ``evaluate``, ``tracking``."""
    cfg = section(params, "evaluate", EVALUATE_KEYS)
    model, processor = load_model(paths.model)
    splits = load_splits(paths)
    test = splits["test"]
    if len(test) == 0:
        raise MetalloError("the test split is empty: no sample has a slice_id in split.test_slices.")
    images, spectra = test.arrays()
    wants_attention = getattr(model.config, "explanation_maps", False)
    y_pred, attention = predict_arrays(model, processor, images.numpy(), spectra.numpy(),
                                       batch_size=int(cfg["batch_size"]), return_attention=wants_attention)
    y_true = test.labels.astype(np.float64)
    metrics = regression_metrics(y_true, y_pred)
    baselines = baseline_metrics(load_stats(paths), splits["train"], test, model.config, processor)
    interval = prediction_interval(paths, y_true, y_pred, float(cfg.get("interval", 0.9)))
    report = {**_finite_or_none(metrics), "n": int(len(y_true)), "interval": interval["summary"],
              "baselines": {name: _finite_or_none(values) for name, values in baselines.items()}}
    write_json(paths.metrics / "eval.json", report)
    write_csv(paths.metrics / "predictions.csv",
              pd.DataFrame({"sample_id": test.sample_ids, "y_true": y_true, "y_pred": y_pred.astype(np.float64),
                            "y_lower": interval["lower"], "y_upper": interval["upper"]}),
              float_format="%.6g")

    out = paths.metrics / "figures"
    extents = grid_extents(paths.processed)[test.index]  # where each test sample's grid lies in its image
    written = [figures.predicted_vs_true(y_true, y_pred, metrics, out / "pred_vs_true.png"),
               figures.residual_histogram(y_true, y_pred, out / "residuals.png"),
               figures.spectra_on_grid(images[0].numpy(), spectra[0].numpy(), tuple(model.config.grid),
                                       test.sample_ids[0], out / "spectra_grid.png",
                                       extent=tuple(extents[0]))]
    if attention is not None:
        k = min(int(cfg["attention_examples"]), len(y_true))
        if getattr(model.config, "fusion", None) == "grid":
            written.append(figures.cell_contribution_montage(images[:k].numpy(), attention[:k], extents[:k], y_true[:k],
                                                             y_pred[:k], test.sample_ids[:k], out / "cells.png"))
        else:
            written.append(figures.attention_montage(images[:k].numpy(), attention[:k], y_true[:k], y_pred[:k],
                                                     test.sample_ids[:k], out / "attention.png"))
    for stale in set(out.glob("*.png")) - set(written):
        stale.unlink()

    run_file = paths.model.parent / RUN_FILE
    run = read_json(run_file) if run_file.is_file() else {}
    experiment = section(params, "tracking")["experiment"]
    tracker = Tracker(experiment, enabled=bool(run.get("run_id")), run_id=run.get("run_id"))
    tracker.sweep_stale_runs()
    tracker.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    for name, values in baselines.items():
        tracker.log_metrics({f"{name}_baseline_test_{k}": v for k, v in values.items()})
    tracker.log_metrics({f"test_interval_{k}": v for k, v in interval["summary"].items() if v is not None})
    tracker.log_artifact(out, "figures")
    for name in ("eval.json", "train.json", "ingest.json", "split.json"):
        tracker.log_artifact(paths.metrics / name, "metrics")
    tracker.log_artifact(paths.metrics / "predictions.csv", "metrics")
    print(f"evaluate: test R² {metrics['r2']:.3f}, RMSE {metrics['rmse']:.4g}, MAE {metrics['mae']:.4g}, n={len(y_true)}; "
          f"classical baseline R² {baselines['classical']['r2']:.3f}, mean baseline RMSE "
          f"{baselines['mean']['rmse']:.4g} -> {paths.metrics / 'eval.json'}")
    return report
