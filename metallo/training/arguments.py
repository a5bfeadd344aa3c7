"""``train:`` params → ``transformers.TrainingArguments`` (plus a few Metallo options).

Every key of ``train:`` is either a Metallo option (:data:`METALLO_OPTIONS`) or a
``TrainingArguments`` field; anything else fails before any work starts, naming the
closest valid keys. ``use_cpu`` and ``bf16`` follow the hardware unless set explicitly.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from transformers import TrainingArguments

from metallo.errors import MetalloError
from metallo.params import check_keys


@dataclass
class MetalloOptions:
    """Options of ``train:`` that are Metallo's own, not ``TrainingArguments`` fields.

    Args:
        early_stopping_patience: epochs without a better validation RMSE before stopping (0 = off).
        resume: continue from the newest complete checkpoint in ``checkpoints/`` if there is one. It must
            have been written for the same params and data (its ``metallo_fingerprint.json``); otherwise
            the stage stops and names what changed (see :mod:`metallo.training.checkpoints`).
        compile: wrap the model with ``torch.compile`` (sets ``torch_compile``).
        nproc_per_node: processes per machine; > 1 launches the stage through ``torchrun`` (DDP).
        augment: on the device, flip image and spectra grid together and jitter illumination (±15 %),
            colour balance (±6 % per channel) and spectrometer gain (±5 %), as between specimens.
        data_on_device: hold the whole train split as tensors on the training device (true/false;
            "auto": on a single GPU when it takes under a quarter of the free memory).
        cell_pretrain_epochs: epochs of self-supervised pretraining of MetalloNet's cell image encoder before
            the label is fitted (:mod:`metallo.training.pretraining`); 0 = none. Not used by other models.
        try_without_branch_below: MetalloNet with a classical branch: when the branch's closed-form start explains
            less than this share of the validation variance (R²), also train the learned path without the branch
            and keep what validates better (:mod:`metallo.training.without_branch`; pretraining and the label phase
            run twice then).
            0 = never, 1 = always.
        profile: ``cpu`` (the demo) or ``gpu``: the values of the keys set to ``auto``
            (:mod:`metallo.training.profiles`, applied by the train stage before these arguments).
    """

    early_stopping_patience: int = 10
    resume: bool = False
    compile: bool = False
    nproc_per_node: int = 1
    augment: bool = True
    data_on_device: bool | str = "auto"
    cell_pretrain_epochs: int = 20
    try_without_branch_below: float = 0.7
    profile: str = "cpu"

    def __post_init__(self) -> None:
        if self.data_on_device not in (True, False, "auto"):
            raise MetalloError(f"train.data_on_device must be true, false or auto; got {self.data_on_device!r}.")
        below = self.try_without_branch_below
        if isinstance(below, bool) or not isinstance(below, (int, float)) or not 0 <= below <= 1:
            raise MetalloError(
                "train.try_without_branch_below must be a number from 0 (never train without the hand-made branch) "
                f"to 1 (always); got {below!r}."
            )


METALLO_OPTIONS = tuple(f.name for f in dataclasses.fields(MetalloOptions))
#: TrainingArguments fields Metallo sets itself.
MANAGED_FIELDS = ("output_dir",)
TRAINING_FIELDS = tuple(
    f.name for f in dataclasses.fields(TrainingArguments) if f.init and f.name not in MANAGED_FIELDS
)
#: ``TrainingArguments`` fields whose out-of-range values transformers accepts and fails on later, deep inside
#: training (a batch size of 0, a negative learning rate): checked here, naming the param.
POSITIVE_INTEGERS = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps")
POSITIVE_NUMBERS = ("learning_rate",)
NON_NEGATIVE_NUMBERS = ("weight_decay", "warmup_steps", "max_grad_norm", "adam_epsilon", "dataloader_num_workers")


def bf16_supported(device_type: str) -> bool:
    """Whether bf16 autocast is the precision to use on ``device_type``: a CUDA GPU that supports it."""
    return device_type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def hardware_defaults() -> dict[str, Any]:
    """``use_cpu``/``bf16`` for this machine: bf16 autocast on GPUs that support it."""
    return {"use_cpu": not torch.cuda.is_available(), "bf16": bf16_supported("cuda")}


def report_targets(train: dict[str, Any]) -> list[str]:
    """``train.report_to`` as a list (a string or ``none`` allowed); MLflow unless set otherwise."""
    report_to = train.get("report_to", ["mlflow"])
    return [report_to] if isinstance(report_to, str) else list(report_to or [])


def accelerator_step_settings(pin_memory: bool = True) -> dict[str, Any]:
    """``TrainingArguments`` defaults on an accelerator that keep the training step free of host syncs.

    Checking every step's loss for NaN/inf (``logging_nan_inf_filter``) forces a device-to-host
    sync, so the raw loss is logged instead; batches from pinned memory are copied to the device
    without blocking (accelerate's ``non_blocking``), so the host can queue the next step's work.
    """
    return {"logging_nan_inf_filter": False, "accelerator_config": {"non_blocking": bool(pin_memory)}}


def _finite(value: Any) -> float | None:
    """``value`` as a finite float (YAML may give ``1e-3`` as a string), or ``None``."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def check_ranges(train: dict[str, Any]) -> None:
    """Refuse out-of-range values of :data:`POSITIVE_INTEGERS`, :data:`POSITIVE_NUMBERS` and
    :data:`NON_NEGATIVE_NUMBERS`, each named with what it must be."""
    problems = []
    for key in POSITIVE_INTEGERS:
        value = train.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            problems.append(f"train.{key} must be a positive integer; got {value!r}")
    for key in POSITIVE_NUMBERS + NON_NEGATIVE_NUMBERS:
        if key not in train:
            continue
        number = _finite(train[key])
        if number is None or number < 0 or (number == 0 and key in POSITIVE_NUMBERS):
            kind = "a positive number" if key in POSITIVE_NUMBERS else "0 or a positive number"
            problems.append(f"train.{key} must be {kind}; got {train[key]!r}")
    if problems:
        raise MetalloError("; ".join(problems) + ". Fix params.yaml or the -S option.")


def metallo_options(train: dict[str, Any]) -> MetalloOptions:
    """Validate every key of ``train:`` and return Metallo's own options (cheap: no device set-up)."""
    check_keys("train", train, METALLO_OPTIONS + TRAINING_FIELDS)
    return MetalloOptions(**{k: v for k, v in train.items() if k in METALLO_OPTIONS})


def build_training_arguments(
    train: dict[str, Any], output_dir: str | os.PathLike
) -> tuple[TrainingArguments, MetalloOptions]:
    """Validate ``train:`` and split it into ``TrainingArguments`` and :class:`MetalloOptions`."""
    options = metallo_options(train)
    check_ranges(train)
    kwargs = {k: v for k, v in train.items() if k in TRAINING_FIELDS}
    auto = hardware_defaults()
    kwargs.setdefault("use_cpu", auto["use_cpu"])
    if not kwargs["use_cpu"]:
        for key, value in accelerator_step_settings(kwargs.get("dataloader_pin_memory", True)).items():
            if key == "accelerator_config" and isinstance(kwargs.get(key), dict):
                kwargs[key] = {**value, **kwargs[key]}
            kwargs.setdefault(key, value)
    if "fp16" not in kwargs:
        kwargs.setdefault("bf16", auto["bf16"] and not kwargs["use_cpu"])
    # MLflow is handled by Metallo's own tracker (one run, only the params.yaml params).
    kwargs["report_to"] = [r for r in report_targets(train) if r not in ("mlflow", "none")] or "none"
    if options.compile:
        kwargs["torch_compile"] = True
    if options.early_stopping_patience and not kwargs.get("load_best_model_at_end", False):
        raise MetalloError(
            "train.early_stopping_patience needs train.load_best_model_at_end: true "
            "(and a metric_for_best_model); set patience to 0 to turn early stopping off."
        )
    try:
        args = TrainingArguments(output_dir=str(output_dir), **kwargs)
    except (ValueError, TypeError) as err:
        raise MetalloError(f"invalid train: params for transformers.TrainingArguments: {err}") from None
    return args, options


def tracks_mlflow(train: dict[str, Any]) -> bool:
    """Whether ``train.report_to`` asks for MLflow (Metallo's own tracker logs the run)."""
    return "mlflow" in report_targets(train)
