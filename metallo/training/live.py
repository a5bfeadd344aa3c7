"""DVC-side logging with dvclive: the training curve and live metrics update while training runs.

A :class:`dvclive.Live` writes one ``.tsv`` per series under ``metrics/live/plots/metrics/`` (``train_loss``,
``learning_rate``, ``epoch``, ``val_mae``, ``val_rmse``, ``val_r2``, ``val_pearson``, against the training
step) and, after every logged step, the latest values into ``metrics/live/metrics.json``. Both are outputs
of the ``train`` stage, so ``dvc exp show`` and ``dvc plots show`` (and the VS Code extension) follow a
running ``dvc exp run``. When training ends, ``metrics/train.json`` (written once, atomically) holds the
best model's summary and ``metrics/live/metrics.json`` keeps the progress only (step, epoch, last training
loss and learning rate), so no metric name means two things.

Only deterministic values go to these DVC-tracked files (no timestamps, runtimes or run ids): rerunning
identical work leaves them, and ``dvc.lock``, unchanged. Runtimes go to MLflow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dvclive import Live
from transformers import TrainerCallback

from metallo.metrics import METRIC_NAMES

#: Trainer log keys → the series names users see in ``dvc plots`` and ``metrics/train.json``.
SERIES = {
    "loss": "train_loss",
    "learning_rate": "learning_rate",
    "epoch": "epoch",
    **{f"eval_{m}": f"val_{m}" for m in METRIC_NAMES},
}
LIVE_DIR = "live"


def series(logs: Mapping[str, Any]) -> dict[str, float]:
    """The values of one Trainer log entry under their series names (the end-of-training averages and
    runtimes are left to MLflow)."""
    if "train_runtime" in logs:
        return {}
    out = {
        SERIES[k]: float(v)
        for k, v in logs.items()
        if k in SERIES and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if "loss" not in logs:
        out.pop("epoch", None)  # the training log of the same step has it: one value per series and step
    return out if set(out) - {"epoch"} else {}


def open_live(metrics_dir: str | os.PathLike) -> Live:
    """The dvclive logger for ``metrics_dir/live`` (``metrics/live``).

    No ``dvc.yaml`` is written (the pipeline's ``dvc.yaml`` declares the outputs), no experiment is saved
    (``dvc exp run`` does that) and no report is made.
    """
    return Live(dir=str(Path(metrics_dir) / LIVE_DIR), dvcyaml=False, save_dvc_exp=False, report=None)


def log_step(live, values: Mapping[str, float], step: int) -> None:
    """Log ``values`` at training step ``step`` and write the summary (one row per series and step)."""
    if not values:
        return
    live.step = int(step)
    for name, value in values.items():
        live.log_metric(name, value)
    live.next_step()


def finish(live: Live) -> None:
    """End the live log; its summary keeps the progress (the best model's metrics are in ``train.json``)."""
    step = live.step
    live.summary = {k: v for k, v in live.summary.items() if not k.startswith("val_")}
    live.step = step
    live.end()


class LiveCallback(TrainerCallback):
    """Sends the Trainer's logs to dvclive as the training runs (world process zero only).

    On a resumed training the checkpoint's log history is replayed first, so the series hold every
    step once.
    """

    def __init__(self, live):
        self.live = live

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            for entry in state.log_history:
                log_step(self.live, series(entry), entry.get("step", 0))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            log_step(self.live, series(logs), state.global_step)
