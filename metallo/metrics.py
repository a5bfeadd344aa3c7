"""Regression metrics in label units: MAE, RMSE, R² and Pearson r."""

from __future__ import annotations

import numpy as np
from transformers import EvalPrediction

from metallo.metric_names import METRIC_NAMES as METRIC_NAMES  # one definition, re-exported here


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """MAE, RMSE, R² (1 − SS_res/SS_tot) and Pearson r; R²/r are NaN when undefined (constant input)."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"need two non-empty arrays of one length; got {y_true.shape} and {y_pred.shape}")
    error = y_pred - y_true
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    dt, dp = y_true - y_true.mean(), y_pred - y_pred.mean()
    denom = float(np.sqrt((dt**2).sum() * (dp**2).sum()))
    return {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "r2": 1.0 - float((error**2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
        # a constant prediction (e.g. the mean baseline) has no correlation: NaN, not rounding noise
        "pearson": float((dt * dp).sum()) / denom if denom > 0 and np.ptp(y_pred) > 0 else float("nan"),
    }


def compute_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
    """``Trainer`` hook: predictions are already in label units (the model de-standardises)."""
    predictions = eval_pred.predictions
    if isinstance(predictions, tuple):
        predictions = predictions[0]
    return regression_metrics(eval_pred.label_ids, predictions)
