"""One name per quantity, everywhere: ``metrics/*.json``, MLflow, dvclive, the CLI and the pyfunc output.

A metric's name is ``<where>/<what>``; MLflow groups its charts by the part before the first ``/``:

* ``test/rmse``, ``test/mae``, ``test/r2``, ``test/pearson``, ``test/n``: the model on the test split
  (``evaluate``);
* ``baseline/classical/rmse``, ``baseline/mean/rmse``, ...: the baselines on the same test split;
* ``interval/halfwidth``, ``interval/coverage`` (on test), ``interval/level``, ``interval/calibration_n``;
* ``val/rmse``, ...: the kept model on the validation split (one value, ``metrics/train.json``'s ``val``);
  ``val/start_rmse`` and ``val/trained_rmse``: the closed-form start and the trained weights;
* ``val_curve/rmse``, ...: the validation split after each evaluation during training (the curve; the Trainer's
  ``eval_rmse``). The kept model is one point of it (its best, or the closed-form start), not the last one: two
  quantities, two names;
* ``train/loss`` (the loss of each logging step, on the standardised DOS), ``train/learning_rate``,
  ``train/grad_norm``, ``epoch``; ``train/mean_loss`` (the Trainer's average over the run, MLflow only),
  ``train/runtime``, ``train/samples_per_second`` (MLflow only: not deterministic).

The JSON files nest the same names (``{"test": {"rmse": ...}}``), so ``dvc metrics show`` and ``dvc exp show``
read ``test.rmse``: the same name with DVC's separator. The prediction is ``dos_pred`` (with ``dos_lower`` and
``dos_upper``) in ``metallo predict``, ``metrics/predictions.csv`` and the MLflow pyfunc model; the label is
``dos`` (``dos_true`` beside a prediction). A ``transformers`` forward pass returns it as ``.predictions``
(the ``ModelOutput`` field every Metallo model shares).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

METRIC_NAMES = ("mae", "rmse", "r2", "pearson")
PREDICTION = "dos_pred"
LOWER, UPPER, TRUE = "dos_lower", "dos_upper", "dos_true"

#: Trainer log keys that are not metrics Metallo shows (``total_flos`` is 0: FLOPs are not counted).
DROPPED = frozenset({"total_flos"})
#: Trainer log keys with their own name.
RENAMED = {
    "loss": "train/loss",
    "grad_norm": "train/grad_norm",
    "learning_rate": "train/learning_rate",
    "epoch": "epoch",
    "train_loss": "train/mean_loss",
}
#: The series dvclive writes (deterministic ones: no runtimes, no run averages).
CURVES = frozenset({"train/loss", "train/learning_rate", "epoch", *(f"val_curve/{m}" for m in METRIC_NAMES)})


def trainer_name(key: str) -> str | None:
    """A ``transformers.Trainer`` log key under its Metallo name (``eval_rmse`` → ``val_curve/rmse``,
    ``train_runtime`` → ``train/runtime``), or ``None`` for a key that is not shown."""
    if key in DROPPED:
        return None
    if key in RENAMED:
        return RENAMED[key]
    if key.startswith("eval_"):
        return f"val_curve/{key.removeprefix('eval_')}"
    if key.startswith("train_"):
        return f"train/{key.removeprefix('train_')}"
    return key


def trainer_metrics(logs: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of one Trainer log entry under their Metallo names (booleans and text left out)."""
    out = {}
    for key, value in logs.items():
        name = trainer_name(key)
        if name and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def flat(nested: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a metrics JSON under their ``/`` names: ``{"test": {"rmse": x}}`` →
    ``{"test/rmse": x}`` (text, null and NaN left out)."""
    out: dict[str, float] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out
