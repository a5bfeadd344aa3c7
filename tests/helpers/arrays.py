"""A MetalloDataset over arrays written to .npy files, for model-level tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metallo.data.dataset import MetalloDataset


def ArrayDataset(folder: Path, images: np.ndarray, spectra: np.ndarray, labels: np.ndarray) -> MetalloDataset:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", images)
    np.save(folder / "spectra.npy", spectra)
    return MetalloDataset(
        folder / "images.npy",
        folder / "spectra.npy",
        np.arange(len(labels)),
        labels,
        [f"s{i}" for i in range(len(labels))],
    )
