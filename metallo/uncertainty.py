"""Prediction intervals by split conformal prediction on the validation residuals.

After training, the absolute residuals of the saved model on the validation split are kept
next to the model (``calibration.json``). For a level 1 − α, the half-width of every
interval is the ⌈(n + 1)(1 − α)⌉-th smallest of the n residuals: if validation and new data
are exchangeable, at least 1 − α of new samples fall inside ``prediction ± half-width``.
A shift between specimens breaks exchangeability; the evaluate stage therefore reports the
coverage it actually reached on the test split.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from metallo.errors import MetalloError
from metallo.io import read_json, write_json

CALIBRATION_FILE = "calibration.json"


def save_calibration(directory: str | os.PathLike, y_true: np.ndarray, y_pred: np.ndarray) -> Path:
    """Write the sorted absolute validation residuals into ``directory``."""
    residuals = np.sort(np.abs(np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)))
    path = Path(directory) / CALIBRATION_FILE
    write_json(
        path,
        {
            "method": "split conformal",
            "split": "val",
            "n": int(len(residuals)),
            "abs_residuals": [float(f"{r:.9g}") for r in residuals],
        },
    )
    return path


def load_calibration(directory: str | os.PathLike) -> np.ndarray | None:
    """The saved absolute residuals (finite, non-negative), or None for a model saved without them."""
    path = Path(directory) / CALIBRATION_FILE
    if not path.is_file():
        return None
    remedy = "copy the model folder again or retrain with `dvc repro train`."
    try:
        data = read_json(path)
    except (OSError, ValueError) as err:
        raise MetalloError(f"{path} is not valid JSON ({err}); {remedy}") from None
    if not isinstance(data, dict):
        raise MetalloError(
            f"{path} must hold a JSON object with abs_residuals; it holds a {type(data).__name__}; {remedy}"
        )
    values = data.get("abs_residuals", [])
    numbers = isinstance(values, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    residuals = np.asarray(values if numbers else [np.nan], dtype=np.float64)
    if not np.isfinite(residuals).all():
        raise MetalloError(f"{path}: abs_residuals must be a list of finite numbers; {remedy}")
    if (residuals < 0).any():
        raise MetalloError(
            f"{path}: abs_residuals holds {int((residuals < 0).sum())} negative value(s); absolute residuals "
            f"are >= 0 (a negative one gives intervals with dos_lower > dos_upper); {remedy}"
        )
    return residuals


def check_level(level: float) -> None:
    """Refuse an interval level outside (0, 1)."""
    if not 0.0 < level < 1.0:
        raise MetalloError(f"the interval level must be between 0 and 1 (e.g. 0.9); got {level!r}.")


def conformal_halfwidth(abs_residuals: np.ndarray, level: float) -> float:
    """Half-width of the split-conformal interval at ``level`` (inf when too few residuals for it)."""
    check_level(level)
    n = len(abs_residuals)
    k = math.ceil((n + 1) * level)
    return float(np.sort(abs_residuals)[k - 1]) if 0 < k <= n else math.inf


def coverage(y_true: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of ``y_true`` inside [lower, upper]."""
    y_true = np.asarray(y_true, np.float64)
    return float(np.mean((y_true >= lower) & (y_true <= upper))) if len(y_true) else math.nan
