"""The ``transformers.Trainer`` the train stage runs: batches augmented and normalised on the device.

:func:`build_trainer` wires the model, the splits, the callbacks and the processor into a
:class:`MetalloTrainer`; :func:`train_best_model` trains it and evaluates the best checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

from metallo.augmentation import Augmentation, augment_batch
from metallo.data.dataset import InMemoryDataset, MetalloDataset
from metallo.errors import MetalloError
from metallo.metrics import compute_metrics
from metallo.processing import MetalloProcessor
from metallo.training import distributed
from metallo.training.arguments import MetalloOptions
from metallo.training.pretraining import pretrain_cell_encoder
from metallo.training.progress import replace_trainer_output

#: Share of the free accelerator memory the train split may take in ``data_on_device: auto``.
DEVICE_DATA_SHARE = 0.25


class MetalloTrainer(Trainer):
    """``Trainer`` whose batches arrive as uint8 images and raw spectra.

    :meth:`compute_loss` (the documented hook every training and evaluation step with labels goes through)
    receives the batch the base class has already moved to the device; there it is augmented (training only:
    flips, illumination and spectrometer gain) and normalised by the :class:`MetalloProcessor` before the
    model sees it: no per-sample image work on the host. (Evaluation batches carry labels, so they take the
    same path; prediction without labels goes through :mod:`metallo.prediction`, not this Trainer.)
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

    def compute_loss(self, model, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch=None):
        return super().compute_loss(model, self.model_inputs(inputs), return_outputs, num_items_in_batch)

    def model_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """A raw batch on the device -> the model's inputs: augmented while training, then normalised."""
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


def use_data_on_device(setting: bool | str, dataset: MetalloDataset, args: TrainingArguments) -> bool:
    """``train.data_on_device`` (validated by :class:`MetalloOptions`): ``true``/``false``, or ``auto`` = on a GPU
    when the split fits comfortably."""
    if setting != "auto":
        return bool(setting)
    if args.device.type != "cuda" or args.world_size > 1:
        return False
    free, _ = torch.cuda.mem_get_info(args.device)
    return InMemoryDataset.nbytes(dataset) < DEVICE_DATA_SHARE * free


def train_split(dataset: MetalloDataset, options: MetalloOptions, args: TrainingArguments) -> MetalloDataset:
    """The train split as the loader reads it: held on the device when ``train.data_on_device`` says so."""
    if not use_data_on_device(options.data_on_device, dataset, args):
        return dataset
    args.dataloader_pin_memory, args.dataloader_num_workers = False, 0
    print(f"train: the train split ({InMemoryDataset.nbytes(dataset) / 2**20:.0f} MiB) is held on {args.device}")
    return InMemoryDataset(dataset, args.device)


def build_trainer(
    model,
    processor: MetalloProcessor,
    datasets: dict[str, MetalloDataset],
    args: TrainingArguments,
    options: MetalloOptions,
    callbacks: list[TrainerCallback],
    augmentation: Augmentation | None,
) -> MetalloTrainer:
    """A :class:`MetalloTrainer` on the train and validation splits, with ``callbacks`` and early stopping."""
    if options.early_stopping_patience:
        callbacks = [*callbacks, EarlyStoppingCallback(early_stopping_patience=options.early_stopping_patience)]
    if args.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return MetalloTrainer(
        model=model,
        args=args,
        train_dataset=train_split(datasets["train"], options, args),
        eval_dataset=datasets["val"],
        data_collator=default_collate,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
        processor=processor,
        grid=tuple(model.config.grid),
        augmentation=augmentation,
    )


def announce_early_stop(trainer: MetalloTrainer) -> None:
    """Say so when early stopping ended the training before ``num_train_epochs`` (rank 0)."""
    state = trainer.state
    if not (trainer.is_world_process_zero() and state.max_steps and state.global_step < state.max_steps):
        return
    patience = next(
        (c.early_stopping_patience for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback)),
        None,
    )
    if patience is None:
        return
    metric = (trainer.args.metric_for_best_model or "loss").removeprefix("eval_")
    best = f"; best {metric} {state.best_metric:.4g}" if state.best_metric is not None else ""
    print(
        f"train: early stopping at epoch {state.epoch or 0:.0f} of {trainer.args.num_train_epochs:g} (step "
        f"{state.global_step}/{state.max_steps}): validation {metric} did not improve for {patience} evaluations "
        f"(train.early_stopping_patience){best}",
        flush=True,
    )


def train_best_model(
    trainer: MetalloTrainer,
    resume: str | None,
    loggers: list[TrainerCallback],
    model_dir: Path,
    pretrain_epochs: int = 0,
) -> dict[str, float]:
    """Pretrain the cell encoder for ``pretrain_epochs`` (:func:`~metallo.training.pretraining.pretrain_cell_encoder`;
    not when resuming: the checkpoint holds the pretrained encoder), train (from ``resume`` if given), then evaluate
    the best model on the validation split.

    ``loggers`` (and the progress display) are removed before that evaluation: the best model's metrics
    are the run's summary, not one more step of the curve. A non-finite best validation metric stops
    here with what to check, before anything is written to ``model_dir``.
    """
    if not resume:
        pretrain_cell_encoder(trainer, pretrain_epochs)
    progress = replace_trainer_output(trainer, enabled=not trainer.args.disable_tqdm)
    trainer.train(resume_from_checkpoint=resume)
    announce_early_stop(trainer)
    distributed.broadcast_from_main(trainer.model)  # every rank evaluates the best model rank 0 loaded
    for callback in (*loggers, progress):
        trainer.remove_callback(callback)
    best = trainer.evaluate()
    best_metric = f"eval_{trainer.args.metric_for_best_model or 'loss'}".replace("eval_eval_", "eval_")
    if not all(math.isfinite(float(best.get(key, 0.0))) for key in ("eval_loss", best_metric)):
        raise MetalloError(
            f"training diverged: the best validation {best_metric[5:]} is {best.get(best_metric)} "
            f"(loss {best.get('eval_loss')}), so no model was written to {model_dir}. Check the "
            "data for inf/NaN values (data/split/stats.json, the spectra) or lower train.learning_rate."
        )
    return best
