"""The ``train`` stage: build the model from ``model:``, train it with ``transformers.Trainer``.

Outputs: the best model (``models/model``: config.json, model.safetensors, the preprocessor and a model
card), ``metrics/train.json`` and the training curve in ``metrics/live/`` (both written by dvclive while
training runs, see :mod:`metallo.training.live`), and the untracked ``models/run.json`` (the MLflow run
that ``evaluate`` logs into; not a DVC output, because a run id differs on every run).

The steps live in their own modules: :mod:`~metallo.training.components` (model, processor, splits from
params), :mod:`~metallo.training.trainer` (the Trainer), :mod:`~metallo.training.outputs` (what is saved and
logged), :mod:`~metallo.training.distributed` (torchrun and DDP), :mod:`~metallo.training.checkpoints`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from transformers import set_seed

from metallo.errors import MetalloError, exit_on_error
from metallo.io import disk_full
from metallo.layout import PATHS, Paths
from metallo.params import load_params, section
from metallo.tracking import lineage
from metallo.tracking.console import quiet_libraries
from metallo.tracking.tracker import TrackerCallback
from metallo.training import checkpoints, closed_form, distributed, selection, without_branch
from metallo.training.arguments import build_training_arguments, metallo_options, tracks_mlflow
from metallo.training.components import build_augmentation, build_model_and_data, validation_kind
from metallo.training.live import LiveCallback, open_live
from metallo.training.outputs import clear_evaluation, save_outputs, training_summary
from metallo.training.profiles import apply_profile, profile_record
from metallo.training.trainer import build_trainer, train_best_model


@contextlib.contextmanager
def failing_run(tracker, stage: str) -> Iterator[None]:
    """End the tracker's MLflow run FAILED when the block raises; a full disk becomes a message saying what to do
    (instead of a traceback, and of a run left RUNNING that a later training would mark KILLED)."""
    with tracker.failed_on_error():
        try:
            yield
        except Exception as err:
            if not disk_full(err):
                raise
            raise MetalloError(
                f"{stage}: no space left on the device ({type(err).__name__}: {err}). Free space on the disk that "
                "holds the project (checkpoints/, models/ and the DVC cache grow with every run; `dvc gc -w` drops "
                "cache entries no longer used), then run the stage again. Outputs are written atomically, so no "
                "half-written one is kept; the MLflow run is marked FAILED."
            ) from None


def run_train(params: dict, paths: Paths = PATHS, callbacks: tuple = ()) -> dict[str, Any]:
    """Train and save the best model. Reads the params :data:`metallo.pipeline.STAGES` lists for ``train`` (as
    dvc.yaml does; ``ingest.raw_dir`` and ``split.*`` only describe the data in the model card).

    ``train.profile`` fills the keys set to ``auto`` first (train.json's ``profile`` records what it filled in);
    ``callbacks``: more ``TrainerCallback`` objects (``metallo bench`` times the run with one). Returns
    ``metrics/train.json`` ({} on ranks other than 0).
    """
    profile = profile_record(params)
    params = apply_profile(params)
    train_cfg, model_name = dict(section(params, "train")), section(params, "model")["name"]
    if distributed.relaunched_under_torchrun(metallo_options(train_cfg).nproc_per_node):
        return {}
    args, options = build_training_arguments(train_cfg, paths.checkpoints)
    quiet_libraries()
    if args.process_index == 0:
        clear_evaluation(paths)  # the previous model's test metrics are not this training's
    fingerprint = checkpoints.fingerprint(params, paths)
    resume = distributed.prepare_checkpoints(paths.checkpoints, fingerprint, resume=options.resume, args=args)
    set_seed(args.seed)
    model, processor, datasets = build_model_and_data(params, paths)
    is_main = args.process_index == 0
    tracker = lineage.start_run(
        params, datasets, paths, enabled=tracks_mlflow(train_cfg) and is_main, resolve=apply_profile
    )
    if model.config.fitted_in_closed_form:  # one solve: under torchrun, rank 0 fits and saves
        if not is_main:
            return {}
        live = open_live(paths.metrics)
        with failing_run(tracker, "train"):
            summary, val_pred = closed_form.fit_on_splits(model, processor, datasets, model_name, tracker, live)
            summary["profile"] = profile
            return save_outputs(model, processor, datasets["val"], summary, live, tracker, paths, params, val_pred)
    if resume:
        start = selection.load_start(paths.checkpoints)
    else:
        closed_form.start_from_classical_branch(model, processor, datasets["train"])
        start = selection.record_start(model, processor, datasets["val"])
        if is_main:
            selection.save_start(start, paths.checkpoints)
    live = open_live(paths.metrics) if is_main else None
    loggers = [TrackerCallback(tracker), *([LiveCallback(live)] if live else [])]
    augmentation = build_augmentation(params) if options.augment else None
    callbacks = [*loggers, checkpoints.FingerprintCallback(fingerprint), *callbacks]
    trainer = build_trainer(model, processor, datasets, args, options, callbacks, augmentation)
    with failing_run(tracker, "train"):
        best = train_best_model(trainer, resume, loggers, paths.model, options.cell_pretrain_epochs)
        metrics = {name.removeprefix("eval_"): value for name, value in best.items()}
        metric = (args.metric_for_best_model or "loss").removeprefix("eval_")
        greater = bool(args.greater_is_better)
        metrics, kept = selection.keep_better(trainer.model, start, metrics, metric, greater)
        if without_branch.wanted(model, start, options.try_without_branch_below):
            print(
                f"train: the hand-made branch's start explains R² {start.metrics['r2']:.3f} of the validation "
                f"variance (below train.try_without_branch_below {options.try_without_branch_below:g}): training "
                "the learned path without it too; validation keeps the better"
            )
            trained = without_branch.train_candidate(
                model, processor, datasets, args, options, fingerprint, augmentation
            )
            if trained is not None:
                candidate, candidate_metrics = trained
                wins, kept = without_branch.keep_better(metrics, kept, candidate_metrics, metric, greater)
                if wins:
                    trainer, metrics = candidate, candidate_metrics
        if not trainer.is_world_process_zero():
            return {}
        epochs, steps = trainer.state.epoch or 0, trainer.state.global_step
        summary = training_summary(
            model_name, datasets, epochs, steps, metrics, kept, validation=validation_kind(paths)
        )
        summary["profile"] = profile
        if kept:
            print(
                f"train: kept the {kept['kept']} ({selection.describe(kept, metric)}; validation: "
                f"{summary['validation']})"
            )
        return save_outputs(trainer.model, processor, datasets["val"], summary, live, tracker, paths, params)


def main() -> None:
    with exit_on_error():
        run_train(load_params())
        distributed.shut_down()  # every rank leaves together (see shut_down)


if __name__ == "__main__":
    main()
