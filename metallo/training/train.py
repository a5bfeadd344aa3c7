"""The ``train`` stage: build the model from ``model:``, train it with ``transformers.Trainer``.

Outputs: the best model (``models/model``: config.json, model.safetensors, the preprocessor and a model
card), ``metrics/train.json`` and the training curve in ``metrics/live/`` (both written by dvclive while
training runs, see :mod:`metallo.training.live`), and the untracked ``models/run.json`` (the MLflow run
that ``evaluate`` logs into; not a DVC output, because a run id differs on every run).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate
from transformers import EarlyStoppingCallback, Trainer, set_seed

from metallo.data.convert import grid_extents, processor_settings
from metallo.data.dataset import InMemoryDataset, MetalloDataset, load_splits
from metallo.errors import MetalloError
from metallo.io import atomic_path, sha256_file, write_json
from metallo.layout import PATHS, DataShape, Paths, load_stats
from metallo.params import section
from metallo.processing import Augmentation, MetalloProcessor, augment_batch
from metallo.training import checkpoints, distributed, lineage
from metallo.training.arguments import build_training_arguments, metallo_options, tracks_mlflow
from metallo.training.checkpoints import last_complete_checkpoint  # noqa: F401 - moved there
from metallo.training.closed_form import fit_closed_form, initialise_classical_branch
from metallo.training.metrics import METRIC_NAMES, compute_metrics
from metallo.training.profiles import apply_profile
from metallo.training.progress import quiet_libraries, replace_trainer_output, without_mlflow_hints
from metallo.training.tracking import Tracker, TrackerCallback, git_commit
from metallo.uncertainty import save_calibration

RUN_FILE = "run.json"
#: Keys of the ``tracking:`` params section.
TRACKING_KEYS = ("experiment", "register")


class MetalloTrainer(Trainer):
    """``Trainer`` whose batches arrive as uint8 images and raw spectra.

    After the base class has moved a batch to the device, it is augmented (training only:
    flips, illumination and spectrometer gain) and normalised there by the :class:`MetalloProcessor`: no
    per-sample image work on the host.
    The augmentation draws from this rank's own device generator (``seed + rank``), and FLOPs are not counted
    (the base class walks every module each step for a number Metallo does not use): no host sync per step.
    """

    def __init__(
        self, *args, processor: MetalloProcessor, grid: tuple[int, int], augmentation: Augmentation | None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.processor = processor
        self.grid = grid
        self.augmentation = augmentation
        self.augmentation_generator: torch.Generator | None = None

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        inputs = super()._prepare_inputs(inputs)
        if self.augmentation is not None and self.model.training:
            device = inputs["pixel_values"].device
            if self.augmentation_generator is None or self.augmentation_generator.device != device:
                self.augmentation_generator = distributed.augmentation_generator(
                    device, self.args.seed, self.args.process_index
                )
            inputs = augment_batch(inputs, self.grid, self.augmentation, self.augmentation_generator)
        return self.processor(inputs)

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        return 0


def dataset_grid_extent(paths: Paths = PATHS) -> list[float]:
    """The measurement grid's place in the converted images (median over samples; see ``convert.fit``)."""
    return [round(float(v), 6) for v in np.median(grid_extents(paths.processed), axis=0)]


def build_model(params: dict, stats: dict, grid_extent: list[float] | None = None):
    """The model named by ``model.name`` with the data shape and the train label statistics.

    Keys of ``model:`` that belong to another registered model (e.g. ``backbone`` when the
    classical baseline is chosen) are left out, so one params file serves every model;
    a key no model knows is refused. ``grid_extent`` (from the convert geometry) goes to models
    that place spectra on the image.
    """
    from metallo.models import config_fields, create_model, list_models

    cfg = dict(section(params, "model"))
    name = cfg.pop("name", None)
    if not name:
        raise MetalloError("model.name is missing; set it to one of metallo.models.list_models() (e.g. metallonet).")
    if name in list_models():
        own = set(config_fields(name))
        others = {field for other in list_models() for field in config_fields(other)} - own
        cfg = {key: value for key, value in cfg.items() if key not in others}
        if grid_extent is not None and "grid_extent" in own:
            cfg.setdefault("grid_extent", grid_extent)
    shape = DataShape.from_params(params)
    try:
        return create_model(
            name,
            n_spectra=shape.n_spectra,
            spectrum_length=shape.spectrum_length,
            grid=list(shape.grid),
            label_mean=stats["label"]["mean"],
            label_std=stats["label"]["std"] or 1.0,
            **cfg,
        )
    except ValueError as err:
        raise MetalloError(f"cannot build model {name!r} from the model: params: {err}") from None


#: Share of the free accelerator memory the train split may take in ``data_on_device: auto``.
DEVICE_DATA_SHARE = 0.25


PREPROCESS_KEYS = (
    "spectra",
    "std_floor",
    "image",
    "augment_illumination",
    "augment_colour",
    "augment_spectra_gain",
    "augment_spectra_offset",
)


def build_processor(params: dict, stats: dict, model_config, paths: Paths = PATHS) -> MetalloProcessor:
    """The input processor from ``preprocess:``, convert's geometry (``convert.json``) and the train statistics.

    A model whose config has ``raw_inputs`` (the classical baseline) normalises its inputs
    itself and gets images in [0, 1] and spectra as measured.
    """
    cfg = section(params, "preprocess", PREPROCESS_KEYS)
    raw = getattr(model_config, "raw_inputs", False)
    return MetalloProcessor.from_stats(
        stats,
        image_size=model_config.image_size,
        **processor_settings(paths.processed),
        spectra_norm="none" if raw else cfg.get("spectra", "snv"),
        image_norm="none" if raw else cfg.get("image", "dataset"),
        raw_copies=getattr(model_config, "classical_branch", False),
        std_floor=float(cfg.get("std_floor", 0.01)),
    )


def build_augmentation(params: dict) -> Augmentation:
    """``preprocess.augment_*`` ranges (used when ``train.augment`` is on)."""
    cfg = section(params, "preprocess", PREPROCESS_KEYS)
    return Augmentation(
        **{key.removeprefix("augment_"): float(value) for key, value in cfg.items() if key.startswith("augment_")}
    )


def use_data_on_device(setting: bool | str, dataset: MetalloDataset, args) -> bool:
    """``train.data_on_device``: ``true``/``false``, or ``auto`` = on a GPU when the split fits comfortably."""
    if setting not in (True, False, "auto"):
        raise MetalloError(f"train.data_on_device must be true, false or auto; got {setting!r}.")
    if setting != "auto":
        return bool(setting)
    if args.device.type != "cuda" or args.world_size > 1:
        return False
    free, _ = torch.cuda.mem_get_info(args.device)
    return InMemoryDataset.nbytes(dataset) < DEVICE_DATA_SHARE * free


def data_hash(paths: Paths = PATHS) -> str:
    """A short digest of the processed data and the split, for the run's tags."""
    import hashlib

    digest = hashlib.sha256()
    for path in (paths.processed / "samples.parquet", paths.split / "split.parquet", paths.stats):
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()[:16]


def launch_torchrun(nproc: int) -> None:
    """Re-run this stage under ``torchrun`` with ``nproc`` processes (Trainer runs DDP)."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "metallo.training.train",
    ]
    print("train: launching", " ".join(cmd[1:]), flush=True)
    result = subprocess.run(cmd, check=False)
    if result.returncode:
        raise MetalloError(f"torchrun exited with status {result.returncode}; see the log above.")


def run_train(params: dict, paths: Paths = PATHS, callbacks: tuple = ()) -> dict[str, Any]:
    """Train and save the best model. Reads ``model``, ``train``, ``tracking``, ``data``, ``convert`` (and
    ``ingest.raw_dir``, ``split`` for the model card).

    ``train.profile`` fills the keys set to ``auto`` first; ``callbacks``: more ``TrainerCallback`` objects
    (``metallo bench`` times the run with one).
    """
    params = apply_profile(params)
    train_cfg = dict(section(params, "train"))
    nproc = metallo_options(train_cfg).nproc_per_node
    if nproc > 1 and "LOCAL_RANK" not in os.environ:  # not yet under torchrun: relaunch there
        launch_torchrun(nproc)
        return {}
    args, options = build_training_arguments(train_cfg, paths.checkpoints)
    quiet_libraries()

    stats = load_stats(paths)
    fingerprint = checkpoints.fingerprint(params, paths)
    resume = distributed.prepare_checkpoints(paths.checkpoints, fingerprint, resume=options.resume, args=args)
    set_seed(args.seed)
    model = build_model(params, stats, dataset_grid_extent(paths))
    processor = build_processor(params, stats, model.config, paths)
    datasets = load_splits(paths)
    if len(datasets["val"]) == 0:
        raise MetalloError("the validation split is empty; raise split.val_fraction or add training samples.")

    is_main = args.process_index == 0
    tracker = start_tracking(params, train_cfg, datasets, is_main, paths)

    train_dataset = datasets["train"]
    if use_data_on_device(options.data_on_device, train_dataset, args):
        train_dataset = InMemoryDataset(train_dataset, args.device)
        args.dataloader_pin_memory, args.dataloader_num_workers = False, 0
        print(
            f"train: the train split ({InMemoryDataset.nbytes(datasets['train']) / 2**20:.0f} MiB) "
            f"is held on {args.device}"
        )
    model_name = section(params, "model")["name"]
    if getattr(model.config, "fitted_in_closed_form", False):
        return fit_and_save(model, processor, datasets, model_name, tracker, paths, params)
    if getattr(model.config, "classical_branch", False) and not resume:
        alpha = initialise_classical_branch(model, processor, datasets["train"])
        print(f"train: classical branch fitted by ridge (alpha {alpha:g}); training starts from its predictions")
    if args.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    from metallo.training.live import LiveCallback, open_live

    live = open_live(paths.metrics) if is_main else None
    loggers = [TrackerCallback(tracker), *([LiveCallback(live)] if live else [])]
    callbacks = [*loggers, checkpoints.FingerprintCallback(fingerprint), *callbacks]
    if options.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=options.early_stopping_patience))
    trainer = MetalloTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=datasets["val"],
        data_collator=default_collate,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
        processor=processor,
        grid=tuple(model.config.grid),
        augmentation=build_augmentation(params) if options.augment else None,
    )
    progress = replace_trainer_output(trainer, enabled=not args.disable_tqdm)
    try:
        trainer.train(resume_from_checkpoint=resume)
        distributed.broadcast_from_main(trainer.model)  # every rank evaluates the best model rank 0 loaded
        for callback in (*loggers, progress):  # the best model's metrics are the summary, not one more step
            trainer.remove_callback(callback)
        best = trainer.evaluate()
        best_metric = f"eval_{args.metric_for_best_model or 'loss'}".replace("eval_eval_", "eval_")
        if not all(math.isfinite(float(best.get(k, 0.0))) for k in ("eval_loss", best_metric)):
            raise MetalloError(
                f"training diverged: the best validation {best_metric[5:]} is {best.get(best_metric)} "
                f"(loss {best.get('eval_loss')}), so no model was written to {paths.model}. Check the "
                "data for inf/NaN values (data/split/stats.json, the spectra) or lower train.learning_rate."
            )
    except BaseException:
        tracker.finish("FAILED")
        raise
    if not trainer.is_world_process_zero():
        return {}

    summary = {
        "model": model_name,
        "epochs": float(trainer.state.epoch or 0),
        "steps": int(trainer.state.global_step),
        "train_samples": len(datasets["train"]),
        "val_samples": len(datasets["val"]),
        **{f"val_{m}": float(best[f"eval_{m}"]) for m in METRIC_NAMES},
    }
    return save_outputs(trainer.model, processor, datasets["val"], summary, live, tracker, paths, params)


def start_tracking(
    params: dict, train_cfg: dict, datasets: dict[str, MetalloDataset], is_main: bool, paths: Paths
) -> Tracker:
    """Open the MLflow run with the standard source tags, Metallo's tags, the params and the datasets."""
    tracking_cfg = section(params, "tracking", TRACKING_KEYS)
    tracker = Tracker(tracking_cfg["experiment"], enabled=tracks_mlflow(train_cfg) and is_main)
    if not tracker.enabled:
        return tracker
    model_name = section(params, "model")["name"]
    experiment_name = os.environ.get("DVC_EXP_NAME", "")
    digest = data_hash(paths)
    tags = {
        **(tracker.call("read the source tags", lambda: lineage.source_tags(git_commit())) or {}),
        "data.hash": digest,
        "model.name": model_name,
        **({"dvc.experiment": experiment_name} if experiment_name else {}),
    }
    tracker.start(run_name=experiment_name or f"{model_name} {datetime.now():%Y-%m-%d %H:%M:%S}", tags=tags)
    tracker.log_params(params)
    inputs = tracker.call("describe the datasets", lambda: lineage.split_datasets(datasets, paths.processed, digest))
    if inputs:
        lineage.log_datasets(tracker, inputs)
    return tracker


def fit_and_save(
    model,
    processor: MetalloProcessor,
    datasets: dict[str, MetalloDataset],
    model_name: str,
    tracker: Tracker,
    paths: Paths,
    params: dict,
) -> dict[str, Any]:
    """Fit a closed-form model (the classical baseline) on the train split and save it like a trained one."""
    from metallo.prediction import predict_arrays
    from metallo.training.live import log_step, open_live
    from metallo.training.metrics import regression_metrics

    started = time.perf_counter()
    try:
        alpha = fit_closed_form(model, processor, datasets["train"])
    except BaseException:
        tracker.finish("FAILED")
        raise
    seconds = time.perf_counter() - started
    tracker.log_metrics(
        {"train_runtime": seconds, "train_samples_per_second": len(datasets["train"]) / max(seconds, 1e-9)}
    )
    val = datasets["val"]
    val_pred, _ = predict_arrays(model, processor, *(array.numpy() for array in val.arrays()))
    val_metrics = regression_metrics(val.labels, val_pred)
    summary = {
        "model": model_name,
        "epochs": 1.0,
        "steps": 1,
        "train_samples": len(datasets["train"]),
        "val_samples": len(val),
        "ridge_alpha": alpha,
        **{f"val_{m}": float(val_metrics[m]) for m in METRIC_NAMES},
    }
    live = open_live(paths.metrics)
    log_step(live, {f"val_{m}": summary[f"val_{m}"] for m in METRIC_NAMES}, step=1)
    return save_outputs(model, processor, val, summary, live, tracker, paths, params, val_pred=val_pred)


def input_example(dataset: MetalloDataset) -> dict[str, np.ndarray]:
    """The first sample of ``dataset`` as the pyfunc model's input (uint8 image, raw spectra)."""
    images, spectra = dataset.arrays()
    return {"pixel_values": images[:1].numpy(), "spectra": spectra[:1].numpy()}


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
    """Save the model with its processor, calibration and model card, the metrics and the run file; log them
    to MLflow.

    ``summary`` becomes ``metrics/train.json``; ``live`` (the dvclive logger) is ended here. ``val_pred``: the
    model's validation predictions when the caller has them (else computed here).
    """
    from metallo.hub import write_model_card
    from metallo.prediction import predict_arrays
    from metallo.training.live import finish

    if val_pred is None:
        val_pred, _ = predict_arrays(model.eval(), processor, *(array.numpy() for array in val.arrays()))
    with atomic_path(paths.model) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        save_calibration(tmp, val.labels, val_pred)
        write_model_card(tmp, model.config, params, summary, paths)
    write_json(paths.metrics / "train.json", summary)
    finish(live)
    digest = lineage.model_digest(paths.model)
    tracker.set_tags({lineage.MODEL_DIGEST_TAG: digest})
    write_json(
        paths.model.parent / RUN_FILE,
        {
            "run_id": tracker.run_id if tracker.enabled else None,
            "experiment": tracker.experiment,
            "model_digest": digest,
        },
    )
    tracker.log_metrics({k: v for k, v in summary.items() if k.startswith("val_") or k == "ridge_alpha"})
    tracker.log_artifact(paths.metrics / "train.json", "metrics")
    tracker.log_artifact(paths.model, "model")
    with without_mlflow_hints():
        from metallo.prediction.mlflow_model import log_pyfunc_model

        log_pyfunc_model(tracker, paths.model, input_example(val))
    tracker.finish()
    print(f"train: best validation RMSE {summary['val_rmse']:.4g}, R² {summary['val_r2']:.3f} -> {paths.model}")
    return summary


def main() -> None:
    from metallo.errors import exit_on_error
    from metallo.params import load_params

    with exit_on_error():
        run_train(load_params())


if __name__ == "__main__":
    main()
