"""Section (d): the real ``train`` stage (:func:`metallo.training.train.run_train`) on the bench's data.

The same code as ``dvc repro train`` with the project's ``params.yaml`` (``--params``; ``--profile``
sets ``train.profile``): evaluation, checkpoints, MLflow logging (into a store in the work folder),
data on the device, channels-last, bf16 and compile as those params say. The bench only sets what
describes its data and run: the data shape, the model, the batch size, ``max_steps`` (warm-up +
timed steps), the workers, the device and precision, one process, a split with every sample of the
bench's single slice in train/val.

A :class:`StageTimer` callback measures, after the warm-up steps, samples/s **with** the time spent
evaluating and checkpointing (and loading the best model at the end) and **without** it, and which
share of the whole stage's wall time went into training steps.
"""

from __future__ import annotations

import copy
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from metallo.bench.data import rate
from metallo.bench.machine import synchronize
from metallo.data.geometry import Geometry
from metallo.data.split import run_split
from metallo.errors import MetalloError
from metallo.io import write_json, write_parquet
from metallo.layout import SAMPLES_FILE, Paths
from metallo.params import load_params
from metallo.training.train import run_train


class _StageTiming:
    """The hooks of the ``StageTimer`` callback (mixed into a ``TrainerCallback`` by :func:`_stage_timer`, so
    that importing this module does not import transformers): the time of the warm-up's end (``mark``), of
    the training's begin and end, and each evaluation/checkpoint pause as (step, seconds)."""

    def __init__(self, device, warmup: int):
        self._device, self._warmup = device, warmup
        self.begin = self.mark = self.end = None
        self.pauses: list[tuple[int, float]] = []  # (step, seconds) of each evaluation/checkpoint pause
        self._paused_at: tuple[int, float] | None = None
        self._resumed = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.begin = time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self._close_pause()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self._warmup:
            synchronize(self._device)
            self.mark = time.perf_counter()
        self._open_pause(state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._open_pause(state, control)

    def _open_pause(self, state, control) -> None:
        if (control.should_evaluate or control.should_save) and self._paused_at is None:
            synchronize(self._device)
            now = time.perf_counter()
            self._paused_at, self._resumed = (state.global_step, now), now

    def on_evaluate(self, args, state, control, **kwargs):
        self._resumed = time.perf_counter()

    def on_save(self, args, state, control, **kwargs):
        self._resumed = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        synchronize(self._device)
        self._resumed = max(self._resumed, time.perf_counter())  # includes loading the best model
        self._close_pause()
        self.end = time.perf_counter()

    def _close_pause(self) -> None:
        if self._paused_at is not None:
            step, started = self._paused_at
            self.pauses.append((step, self._resumed - started))
            self._paused_at = None


def _stage_timer(device, warmup: int):
    """A TrainerCallback timing steps and the evaluation/checkpoint pauses between them."""
    from transformers import TrainerCallback

    class StageTimer(_StageTiming, TrainerCallback):
        pass

    return StageTimer(device, warmup)


def stage_params(base: dict, config, device, precision: str) -> dict:
    """``base`` (the project's params) with only what describes the bench's data and run replaced."""
    params = copy.deepcopy(base)
    params["data"] = {
        "n_spectra": config.n_spectra,
        "spectrum_length": config.spectra_length,
        "grid": list(config.grid),
    }
    params["model"] = {
        **params.get("model", {}),
        "name": config.model,
        "backbone": config.backbone,
        "image_size": config.model_image_size,
    }
    params["split"] = {**params.get("split", {}), "train_slices": ["1"], "test_slices": []}
    train = params.setdefault("train", {})
    if config.profile:
        train["profile"] = config.profile
    train.update(
        per_device_train_batch_size=config.batch_size,
        max_steps=config.warmup_steps + config.steps,
        dataloader_num_workers=config.workers,
        use_cpu=device.type != "cuda",
        bf16=precision == "bf16",
        nproc_per_node=1,
        resume=False,
        disable_tqdm=True,
    )
    if config.compile:
        train["compile"] = True
    return params


@contextmanager
def _tracking_store(root: Path):
    """MLflow logging on, into a SQLite store in the bench's work folder (not the project's)."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


def _paths(root: Path, data, config):
    """The stage folders in the work folder; convert's table and geometry written as the convert stage does."""
    write_parquet(data.processed / SAMPLES_FILE, data.table)
    write_json(
        data.processed / "convert.json",
        {**Geometry(config.resize, config.image_size).to_dict(), "bit_depth": 8, "grid": list(config.grid)},
    )
    return Paths(
        synthetic=data.raw,
        interim=root / "interim",
        processed=data.processed,
        split=root / "split",
        model=root / "models" / "model",
        checkpoints=root / "checkpoints",
        metrics=root / "metrics",
    )


def time_train_stage(data, config, device, precision: str, root: Path) -> dict[str, Any]:
    """Run the train stage once; samples/s after the warm-up with and without evaluation/checkpoint pauses."""
    if not Path(config.params).is_file():
        raise MetalloError(
            f"bench: section (d) runs the train stage with {config.params}, which does not exist; "
            "run it in the project folder or pass --params."
        )
    params = stage_params(load_params(config.params), config, device, precision)
    paths = _paths(root, data, config)
    run_split(params, paths)
    timer = _stage_timer(device, config.warmup_steps)
    started = time.perf_counter()
    with _tracking_store(root):
        summary = run_train(params, paths, callbacks=(timer,))
    stage_s = time.perf_counter() - started
    if timer.mark is None or timer.end is None or summary.get("steps") != config.warmup_steps + config.steps:
        raise MetalloError(
            f"bench: the train stage stopped after {summary.get('steps')} steps, before "
            f"{config.warmup_steps + config.steps} (early stopping?)."
        )
    return _stage_result(timer, summary, config, precision, stage_s)


def _stage_result(timer, summary: dict, config, precision: str, stage_s: float) -> dict[str, Any]:
    seconds = timer.end - timer.mark
    paused = sum(s for step, s in timer.pauses if step >= config.warmup_steps)
    samples = config.steps * config.batch_size
    in_steps = (timer.end - timer.begin) - sum(s for _, s in timer.pauses)
    return {
        "samples_per_s": rate(samples, seconds),
        "samples": samples,
        "seconds": seconds,
        "samples_per_s_without_eval_checkpoint": rate(samples, seconds - paused),
        "eval_checkpoint_s": paused,
        "eval_checkpoint_pauses": len(timer.pauses),
        "steps": config.steps,
        "warmup_steps": config.warmup_steps,
        "stage_s": stage_s,
        "steps_share_of_stage": in_steps / stage_s,
        "precision": precision,
        "compile": config.compile,
        "workers": config.workers,
        "val_rmse": (summary.get("val") or {}).get("rmse"),
        "params": str(config.params),
        "profile": config.profile,
    }
