"""Training datasets: rows of the convert stage's memory-mapped arrays, selected by split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from metallo.errors import MetalloError
from metallo.io import open_npy
from metallo.layout import PATHS, SPLITS, Paths


class MetalloDataset(Dataset):
    """Samples as ``{"pixel_values": uint8 H×W×3, "spectra": float32 S×L, "labels": float32}``.

    Arrays are opened as read-only memory maps (lazily, so each DataLoader worker opens its
    own); nothing is decoded or normalised here.
    """

    def __init__(
        self,
        images_path: str | os.PathLike,
        spectra_path: str | os.PathLike,
        index: np.ndarray,
        labels: np.ndarray | None,
        sample_ids: list[str],
    ):
        self.images_path, self.spectra_path = Path(images_path), Path(spectra_path)
        self.index = np.asarray(index, dtype=np.int64)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.float32)
        self.sample_ids = list(sample_ids)
        self._images: np.ndarray | None = None
        self._spectra: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._images is None:
            self._images = open_npy(self.images_path)
            self._spectra = open_npy(self.spectra_path)
        return self._images, self._spectra

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        images, spectra = self._arrays()
        row = self.index[i]
        item = {
            "pixel_values": torch.from_numpy(np.array(images[row])),
            "spectra": torch.from_numpy(np.array(spectra[row], dtype=np.float32)),
        }
        if self.labels is not None:
            item["labels"] = torch.tensor(self.labels[i])
        return item

    def arrays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split as two tensors (uint8 images, float32 spectra), for on-device data."""
        images, spectra = self._arrays()
        return torch.from_numpy(np.ascontiguousarray(images[self.index])), torch.from_numpy(
            np.ascontiguousarray(spectra[self.index], dtype=np.float32)
        )


def load_splits(paths: Paths = PATHS) -> dict[str, MetalloDataset]:
    """The train/val/test datasets described by ``split.parquet`` over the processed arrays."""
    for needed in (paths.samples, paths.split_table):
        if not needed.is_file():
            raise MetalloError(f"{needed} not found; run `dvc repro split` first.")
    samples = pd.read_parquet(paths.samples)
    split = pd.read_parquet(paths.split_table)
    datasets = {}
    for name in SPLITS:
        rows = split[split["split"] == name]
        index = rows["index"].to_numpy()
        datasets[name] = MetalloDataset(
            paths.images,
            paths.spectra,
            index,
            samples["dos"].to_numpy()[index],
            rows["sample_id"].tolist(),
        )
    return datasets


class InMemoryDataset(Dataset):
    """A split held as tensors on one device (e.g. the whole train split on the GPU).

    Items are views into those tensors, so a batch never leaves the device; use it with
    ``dataloader_num_workers: 0`` and without pinned memory.
    """

    def __init__(self, dataset: MetalloDataset, device: torch.device | str):
        images, spectra = dataset.arrays()
        self.images = images.to(device)
        self.spectra = spectra.to(device)
        self.labels = None if dataset.labels is None else torch.from_numpy(dataset.labels).to(device)
        self.sample_ids = dataset.sample_ids

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"pixel_values": self.images[i], "spectra": self.spectra[i]}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item

    @staticmethod
    def nbytes(dataset: MetalloDataset) -> int:
        """Bytes the split takes once loaded (uint8 images + float32 spectra)."""
        images = open_npy(dataset.images_path)
        spectra = open_npy(dataset.spectra_path)
        per_row = images[0].nbytes + spectra[0].size * 4
        return int(per_row * len(dataset))
