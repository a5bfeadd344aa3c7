"""Fitting models that learn in closed form (the classical baseline) on the train split.

They see the same split, the same processor and the same outputs as the deep models; only
the optimiser differs: features of the whole train split, then one solve.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from metallo.data.dataset import MetalloDataset
from metallo.metrics import METRIC_NAMES, regression_metrics
from metallo.prediction import predict_arrays
from metallo.processing import MetalloProcessor
from metallo.training.live import log_step
from metallo.training.outputs import training_summary


@torch.inference_mode()
def dataset_features(model, processor: MetalloProcessor, dataset: MetalloDataset, batch_size: int = 64) -> np.ndarray:
    """``model.extract_features`` over every sample of ``dataset``, in order, as float64 (N, F)."""
    return batch_features(
        lambda batch: model.extract_features(batch.get("pixel_values"), batch.get("spectra")),
        processor,
        dataset,
        next(model.parameters()).device,
        batch_size,
    )


@torch.inference_mode()
def batch_features(
    extract, processor: MetalloProcessor, dataset: MetalloDataset, device: torch.device, batch_size: int = 64
) -> np.ndarray:
    """``extract(processed batch)`` over every sample of ``dataset``, in order, as float64 (N, F)."""
    images, spectra = dataset.arrays()
    rows = []
    for start in range(0, len(dataset), batch_size):
        batch = processor(
            {
                "pixel_values": images[start : start + batch_size].to(device),
                "spectra": spectra[start : start + batch_size].to(device),
            }
        )
        rows.append(extract(batch).double().cpu().numpy())
    return np.concatenate(rows)


def initialise_classical_branch(model, processor: MetalloProcessor, train: MetalloDataset) -> float:
    """Fit a deep model's classical branch by ridge on ``train`` so that training starts from the classical
    baseline's predictions; returns the chosen ridge penalty."""
    branch = model.classical_branch
    raw = batch_features(
        lambda b: branch.extract_raw(b.get("raw_pixel_values"), b.get("raw_spectra")),
        processor,
        train,
        next(model.parameters()).device,
    )
    targets = (np.asarray(train.labels, np.float64) - model.config.label_mean) / model.config.label_std
    return model.initialise_classical_branch(branch.prepare(raw), targets)


def fit_closed_form(model, processor: MetalloProcessor, train: MetalloDataset, batch_size: int = 64) -> float:
    """Fit ``model`` on ``train``; returns the ridge penalty it chose."""
    model.eval()
    return model.fit(dataset_features(model, processor, train, batch_size), train.labels)


def start_from_classical_branch(model, processor: MetalloProcessor, train: MetalloDataset) -> None:
    """Fit a deep model's classical branch (if it has one) so that training starts from its predictions."""
    if getattr(model.config, "classical_branch", False):
        alpha = initialise_classical_branch(model, processor, train)
        print(f"train: classical branch fitted by ridge (alpha {alpha:g}); training starts from its predictions")


def fit_on_splits(
    model, processor: MetalloProcessor, datasets: dict[str, MetalloDataset], model_name: str, tracker, live
) -> tuple[dict[str, Any], np.ndarray]:
    """Fit a closed-form model on the train split; its training summary and validation predictions.

    The fit's time goes to the MLflow run, the validation metrics to the live metrics (one step).
    """
    started = time.perf_counter()
    alpha = fit_closed_form(model, processor, datasets["train"])
    seconds = time.perf_counter() - started
    tracker.log_metrics(
        {"train/runtime": seconds, "train/samples_per_second": len(datasets["train"]) / max(seconds, 1e-9)}
    )
    val = datasets["val"]
    val_pred, _ = predict_arrays(model, processor, *(array.numpy() for array in val.arrays()))
    metrics = regression_metrics(val.labels, val_pred)
    summary = training_summary(model_name, datasets, 1.0, 1, metrics, ridge_alpha=alpha)
    log_step(live, {f"val_curve/{m}": summary["val"][m] for m in METRIC_NAMES}, step=1)
    return summary, val_pred
