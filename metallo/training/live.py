"""DVC-side logging with dvclive: the training curve and live metrics update while training runs.

A :class:`dvclive.Live` writes one ``.tsv`` per series under ``metrics/live/plots/metrics/``
(``train/loss``, ``train/learning_rate``, ``epoch``, ``val_curve/mae``, ``val_curve/rmse``, ``val_curve/r2``,
``val_curve/pearson``, against the training step: the names of :mod:`metallo.metric_names`, as in MLflow)
and, after every logged step, the latest values into ``metrics/live/metrics.json``. Both are outputs of the
``train`` stage, so ``dvc exp show`` and ``dvc plots show`` (and the VS Code extension) follow a running
``dvc exp run``. When training ends, ``metrics/train.json`` (written once, atomically) holds the kept model's
summary (``val.rmse``) and ``metrics/live/metrics.json`` keeps the progress only (``step``, ``epoch``), so the
final metrics are not listed twice.

Only deterministic values go to these DVC-tracked files (no timestamps, runtimes or run ids): rerunning
identical work leaves them, and ``dvc.lock``, unchanged. Runtimes go to MLflow.

Why not dvclive's own ``DVCLiveCallback`` (``dvclive.huggingface``): it logs every Trainer key under the
Trainer's names (``eval/rmse``, ``train/train_runtime``, ``train/total_flos``), so the files would hold
runtimes (a rerun of identical work would change them) and names that differ from MLflow's; it also saves
the model and makes a DVC experiment on its own. This callback is the few lines that keep one name scheme.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dvclive import Live
from transformers import TrainerCallback

from metallo.metric_names import CURVES, trainer_metrics

LIVE_DIR = "live"
#: What ``metrics/live/metrics.json`` keeps once training has ended.
PROGRESS = ("step", "epoch")


def series(logs: Mapping[str, Any]) -> dict[str, float]:
    """The values of one Trainer log entry under their series names (the end-of-training averages and
    runtimes are left to MLflow)."""
    if "train_runtime" in logs:
        return {}
    out = {name: value for name, value in trainer_metrics(logs).items() if name in CURVES}
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
    """End the live log; its summary keeps the progress (the kept model's metrics are in ``train.json``)."""
    step = live.step
    live.summary = {k: v for k, v in live.summary.items() if k in PROGRESS}
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
