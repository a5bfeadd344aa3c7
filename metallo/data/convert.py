"""Convert: decode the accepted samples into two ``.npy`` arrays Metallo trains from.

``images.npy`` is uint8 N×H×W×3 after the original system's deterministic geometry
(resize the shorter side to ``resize``, then centre-crop ``crop``); ``spectra.npy`` is
float32 N×S×L. Rows are written by worker processes straight into the files at their
offsets, so peak memory does not grow with N.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from metallo.data.readers import read_image_rgb, read_spectra
from metallo.errors import MetalloError
from metallo.io import atomic_path, resolve_inside, write_parquet
from metallo.layout import PATHS, DataShape, Paths
from metallo.parallel import map_ordered
from metallo.params import section


@dataclass(frozen=True)
class Geometry:
    """Resize the shorter side to ``resize`` (bilinear, antialiased), then centre-crop ``crop``."""

    resize: int = 336
    crop: int = 300

    def __post_init__(self) -> None:
        if not 0 < self.crop <= self.resize:
            raise MetalloError(f"convert.crop ({self.crop}) must be positive and at most convert.resize ({self.resize}).")

    def apply(self, image: Image.Image) -> np.ndarray:
        """Return the transformed RGB image as a uint8 crop×crop×3 array."""
        image = TF.resize(image, [self.resize], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        image = TF.center_crop(image, [self.crop])
        return np.asarray(image, dtype=np.uint8)


def _create_npy(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """Create an .npy file of ``shape`` (sparse, zero-filled) and return its data offset."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    offset = array.offset
    del array
    return offset


def _convert_one(task: tuple) -> int:
    """Decode sample ``i`` and write its rows into the two arrays (runs in a worker process)."""
    i, image_path, spectra_path, geometry, spectra_shape, images_file, images_offset, spectra_file, spectra_offset = task
    pixels = geometry.apply(read_image_rgb(image_path))
    spectra = read_spectra(spectra_path, spectra_shape)
    for file, offset, row in ((images_file, images_offset, pixels), (spectra_file, spectra_offset, spectra)):
        data = np.ascontiguousarray(row).tobytes()
        fd = os.open(file, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset + i * len(data))
        finally:
            os.close(fd)
    return i


def convert(samples: pd.DataFrame, raw_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
            geometry: Geometry, spectra_shape: tuple[int, int], workers: int | None = None,
            show_progress: bool | None = None) -> pd.DataFrame:
    """Write ``images.npy``, ``spectra.npy`` and ``samples.parquet`` (row i ↔ array row i) into ``out_dir``."""
    out_dir = Path(out_dir)
    n = len(samples)
    if n == 0:
        raise MetalloError("convert has no accepted samples to convert; check data/interim/rejected.csv.")
    with atomic_path(out_dir / "images.npy") as images_tmp, atomic_path(out_dir / "spectra.npy") as spectra_tmp:
        images_offset = _create_npy(images_tmp, np.dtype(np.uint8), (n, geometry.crop, geometry.crop, 3))
        spectra_offset = _create_npy(spectra_tmp, np.dtype(np.float32), (n, *spectra_shape))
        tasks = [
            (i, resolve_inside(raw_dir, row.image), resolve_inside(raw_dir, row.spectra), geometry, tuple(spectra_shape),
             str(images_tmp), images_offset, str(spectra_tmp), spectra_offset)
            for i, row in enumerate(samples.itertuples())
        ]
        for _ in map_ordered(_convert_one, tasks, workers=workers, desc="convert", show_progress=show_progress):
            pass
    table = samples.reset_index(drop=True).copy()
    table.insert(0, "index", np.arange(n, dtype=np.int64))
    return table


def run_convert(params: dict, paths: Paths = PATHS) -> int:
    """Decode accepted samples into .npy arrays. Reads ``convert``, ``ingest.raw_dir``, ``data``."""
    cfg = section(params, "convert", ["resize", "crop", "workers"])
    samples = pd.read_parquet(paths.interim / "samples.parquet")
    table = convert(samples, section(params, "ingest")["raw_dir"], paths.processed,
                    geometry=Geometry(int(cfg["resize"]), int(cfg["crop"])),
                    spectra_shape=DataShape.from_params(params).spectra, workers=int(cfg["workers"]))
    write_parquet(paths.processed / "samples.parquet", table)
    print(f"convert: {len(table)} samples -> {paths.processed}/images.npy, spectra.npy")
    return len(table)
