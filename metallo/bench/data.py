"""The benchmark's data: synthesised and converted by Metallo's own stages, and the old per-sample PNG pipeline.

:func:`prepare_data` writes one synthetic raw folder (PNG + ``.npy``) and converts it, so the old
pipeline (:class:`PngDataset`, reading the PNGs) and Metallo's (the uint8 memory maps) read the same
samples.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from metallo.bench.config import BenchConfig
from metallo.data.convert import Geometry, convert
from metallo.data.ingest import validate_manifest
from metallo.data.split import train_statistics
from metallo.data.synthesize import synthesize
from metallo.errors import MetalloError
from metallo.layout import IMAGES_FILE, SPECTRA_FILE


def rate(samples: int, seconds: float) -> float:
    """Samples per second (inf for a zero duration)."""
    return samples / seconds if seconds > 0 else float("inf")


def synthesize_raw(raw: Path, config: BenchConfig, samples: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """Synthesise ``samples`` samples of slice 1 into ``raw`` and ingest them: the accepted rows and the timings."""
    workers = config.convert_workers or None
    t0 = time.perf_counter()
    synthesize(
        raw,
        seed=config.seed,
        samples_per_slice={"1": samples},
        image_size=config.image_size,
        n_spectra=config.n_spectra,
        spectrum_length=config.spectra_length,
        grid=config.grid,
        workers=workers,
        progress=False,
    )
    t1 = time.perf_counter()
    result = validate_manifest(raw, spectra_shape=config.spectra_shape, workers=workers, show_progress=False)
    if len(result.rejected):
        raise MetalloError(
            f"bench: {len(result.rejected)} synthetic samples were rejected by ingest:\n"
            f"{result.rejected.head().to_string()}"
        )
    return result.accepted, {"synthesize_s": t1 - t0, "ingest_s": time.perf_counter() - t1}


@dataclass
class BenchData:
    """The prepared samples: raw folder, converted arrays, their table and the setup timings."""

    raw: Path
    processed: Path
    table: pd.DataFrame
    timings: dict[str, float]

    @property
    def labels(self) -> np.ndarray:
        return self.table["dos"].to_numpy(dtype=np.float32)


def prepare_data(work_dir: Path, config: BenchConfig) -> BenchData:
    """Synthesise ``config.samples`` PNG + .npy samples, ingest them and convert them to .npy memmaps."""
    raw, processed = work_dir / "raw", work_dir / "processed"
    processed.mkdir(parents=True, exist_ok=True)
    accepted, timings = synthesize_raw(raw, config, config.samples)
    t0 = time.perf_counter()
    table = convert(
        accepted,
        raw,
        processed,
        geometry=Geometry(config.resize, config.image_size),
        spectra_shape=config.spectra_shape,
        workers=config.convert_workers or None,
        show_progress=False,
    )
    timings["convert_s"] = time.perf_counter() - t0
    timings["convert_images_per_s"] = rate(len(table), timings["convert_s"])
    return BenchData(raw, processed, table, timings)


def data_statistics(processed: Path, labels: np.ndarray) -> dict:
    """Normalisation statistics over all rows (the split stage's function; the bench has no split)."""
    images = np.load(processed / IMAGES_FILE, mmap_mode="r")
    spectra = np.load(processed / SPECTRA_FILE, mmap_mode="r")
    return train_statistics(images, spectra, labels, np.arange(len(labels)))


class PngDataset:
    """The original system's Dataset: PIL decode + torchvision transforms per sample, on the host."""

    def __init__(
        self,
        raw_dir: str | os.PathLike,
        images: list[str],
        spectra: list[str],
        labels: np.ndarray,
        *,
        resize: int,
        crop: int,
        mean: list[float],
        std: list[float],
    ):
        self.raw_dir = Path(raw_dir)
        self.images, self.spectra = list(images), list(spectra)
        self.labels = np.asarray(labels, dtype=np.float32)
        self.resize, self.crop, self.mean, self.std = int(resize), int(crop), list(mean), list(std)
        self._transform = None

    def __len__(self) -> int:
        return len(self.images)

    def transform(self):
        """``ToTensor → Resize → CenterCrop → Normalize``, built lazily in each DataLoader worker."""
        if self._transform is None:
            from torchvision import transforms as T

            self._transform = T.Compose(
                [T.ToTensor(), T.Resize(self.resize), T.CenterCrop(self.crop), T.Normalize(self.mean, self.std)]
            )
        return self._transform

    def __getitem__(self, i: int) -> dict:
        import torch
        from PIL import Image

        with Image.open(self.raw_dir / self.images[i]) as image:
            pixels = self.transform()(image.convert("RGB"))
        spectra = torch.from_numpy(np.load(self.raw_dir / self.spectra[i], allow_pickle=False).astype(np.float32))
        return {"pixel_values": pixels, "spectra": spectra, "labels": torch.tensor(self.labels[i])}


def loader(dataset, *, batch_size: int, workers: int, device):
    """A DataLoader as the training stage builds one (pinned memory on CUDA)."""
    from torch.utils.data import DataLoader, default_collate

    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=default_collate,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )


def to_device(batch: dict, device) -> dict:
    """Every tensor of ``batch`` on ``device`` (non-blocking)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
