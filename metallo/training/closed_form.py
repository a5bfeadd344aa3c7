"""Fitting models that learn in closed form (the classical baseline) on the train split.

They see the same split, the same processor and the same outputs as the deep models; only
the optimiser differs: features of the whole train split, then one solve.
"""

from __future__ import annotations

import numpy as np
import torch

from metallo.data.dataset import MetalloDataset
from metallo.processing import MetalloProcessor


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
