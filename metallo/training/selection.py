"""The choice between a model's closed-form start and the trained model, made on the validation split.

A MetalloNet with a classical branch starts training from the branch's ridge fit (its learned readouts zeroed),
so the start is a model in its own right. Training is worth keeping only where it validates better than that
start: on a held-out specimen (``split.validation``) this keeps what carries over to a new specimen. The start's
weights and metrics are written beside the checkpoints (``closed_form_start.safetensors`` / ``.json``), so a
resumed training makes the choice an uninterrupted one would; when validation favours them, they are put back.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from metallo.data.dataset import MetalloDataset
from metallo.io import atomic_path, read_json, write_json
from metallo.metrics import regression_metrics
from metallo.prediction import predict_arrays
from metallo.processing import MetalloProcessor

#: What ``metrics/train.json`` says was kept.
KEPT_START, KEPT_TRAINED = "closed-form start", "trained"
#: The start's files in the checkpoints folder (weights, validation metrics).
START_WEIGHTS, START_METRICS = "closed_form_start.safetensors", "closed_form_start.json"


@dataclass
class Start:
    """The model as training starts: its weights and its validation metrics."""

    state: dict[str, torch.Tensor]
    metrics: dict[str, float]


@torch.inference_mode()
def validation_metrics(model, processor: MetalloProcessor, val: MetalloDataset) -> dict[str, float]:
    """The model's metrics on ``val`` (eval mode; the mode it had is restored)."""
    was_training = model.training
    model.eval()
    images, spectra = val.arrays()
    predictions, _ = predict_arrays(model, processor, images.numpy(), spectra.numpy())
    model.train(was_training)
    return regression_metrics(val.labels, predictions)


def record_start(model, processor: MetalloProcessor, val: MetalloDataset) -> Start | None:
    """The closed-form start of a model with a classical branch (``None`` for other models)."""
    if not getattr(model.config, "classical_branch", False):
        return None
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    return Start(state, validation_metrics(model, processor, val))


def save_start(start: Start | None, folder: Path) -> None:
    """Write the start beside the checkpoints (nothing for a model without one)."""
    if start is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / START_WEIGHTS) as tmp:
        save_file({name: tensor.contiguous() for name, tensor in start.state.items()}, str(tmp))
    write_json(folder / START_METRICS, start.metrics)


def load_start(folder: Path) -> Start | None:
    """The start a resumed training began from (``None`` when the checkpoints folder has none)."""
    weights, metrics = folder / START_WEIGHTS, folder / START_METRICS
    if not (weights.is_file() and metrics.is_file()):
        return None
    return Start(load_file(weights), {key: float(value) for key, value in read_json(metrics).items()})


def keep_better(model, start: Start | None, trained: dict[str, float], metric: str, greater_is_better: bool):
    """Put the start's weights back into ``model`` when they validate better on ``metric``; returns the kept
    model's validation metrics and the selection record: ``kept`` and, for ``metrics/train.json``'s ``val``
    section, ``start_<metric>`` and ``trained_<metric>``."""
    if start is None:
        return trained, {}
    start_value, trained_value = start.metrics[metric], trained[metric]
    start_wins = start_value > trained_value if greater_is_better else start_value < trained_value
    if start_wins:
        model.load_state_dict(copy.deepcopy(start.state))
    record = {
        "kept": KEPT_START if start_wins else KEPT_TRAINED,
        f"start_{metric}": float(start_value),
        f"trained_{metric}": float(trained_value),
    }
    return (start.metrics if start_wins else trained), record


def describe(record: dict, metric: str) -> str:
    """The validation values the choice was made on, as the console says them."""
    values = [(f"start_{metric}", "at the start"), (f"trained_{metric}", "trained"),
              (f"without_branch_{metric}", "trained without the branch")]  # fmt: skip
    said = ", ".join(f"{record[key]:.4g} {label}" for key, label in values if key in record)
    return f"validation {metric} {said}"


__all__ = [
    "describe",
    "KEPT_START",
    "KEPT_TRAINED",
    "Start",
    "keep_better",
    "load_start",
    "record_start",
    "save_start",
    "validation_metrics",
]
