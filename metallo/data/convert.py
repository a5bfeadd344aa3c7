"""Convert: decode the accepted samples into two ``.npy`` arrays Metallo trains from.

``images.npy`` is uint8 N×H×W×3 after the deterministic geometry of
:mod:`metallo.data.geometry` (``convert.fit``: the whole frame resized to ``crop``×``crop``, or
the original system's resize-shorter-side + centre-crop); ``spectra.npy`` is float32 N×S×L.
16-bit images are scaled to 8 bits with one bit depth for the whole data set
(``convert.bit_depth``: ``auto`` takes it from the largest pixel value ingest recorded).
Rows are written by worker processes straight into the files at their offsets, so peak memory
does not grow with N. ``convert.json`` records the resolved geometry and bit depth; training
stores them in the model's processor so prediction scales and maps images the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from metallo.data.geometry import FIT_CHOICES, Geometry, cell_boxes  # noqa: F401  (re-exported)
from metallo.data.readers import DECODE_MEMORY_BYTES, SampleError, bits_for_max, read_image_rgb, read_spectra
from metallo.errors import MetalloError
from metallo.io import PathEscapeError, atomic_path, read_json, resolve_inside, sha256_file, write_json, write_parquet
from metallo.layout import IMAGES_FILE, PATHS, SAMPLES_FILE, SPECTRA_FILE, DataShape, Paths
from metallo.parallel import map_ordered
from metallo.params import Section, section

CONVERT_INFO = "convert.json"


@dataclass(frozen=True)
class ConvertParams(Section):
    """The ``convert:`` section."""

    NAME = "convert"
    resize: int
    crop: int
    workers: int
    fit: str = "full"
    bit_depth: int | str = "auto"

    def check(self) -> None:
        for name in ("resize", "crop", "workers"):
            self._set(name, int(getattr(self, name)))


#: Below this many bits a 16-bit data set looks like 8-bit data stored in 16 bits, or very dark images.
LOW_BIT_WARNING = 12
#: Columns convert adds to samples.parquet: the source frame (= the spectra grid) in normalised
#: output coordinates, see :meth:`Geometry.grid_extent`.
GRID_COLUMNS = ("grid_x0", "grid_y0", "grid_x1", "grid_y1")


def parse_bit_depth(value) -> str | int:
    """``convert.bit_depth``: ``"auto"`` or an int 8..16."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise MetalloError(f"convert.bit_depth must be auto or a whole number 8..16; got {value!r}.")
    try:
        bits = int(value)
    except ValueError:
        raise MetalloError(f"convert.bit_depth must be auto or a whole number 8..16; got {value!r}.") from None
    if not 8 <= bits <= 16:
        raise MetalloError(f"convert.bit_depth must be auto or a whole number 8..16; got {value!r}.")
    return bits


def resolve_bit_depth(samples: pd.DataFrame, setting: str | int = "auto") -> dict:
    """The bit depth used to scale the data set's 16-bit images, with what it was derived from.

    ``auto``: ``clamp(ceil(log2(max + 1)), 8, 16)`` of the largest value over the 16-bit images
    (16 when there are none). Prints a WARNING when the 16-bit images use fewer than 12 bits, or
    when a fixed bit depth clips some of them.
    """
    setting = parse_bit_depth(setting)
    missing = [c for c in ("image_bit_depth", "image_max_value") if c not in samples.columns]
    if missing:
        raise MetalloError(
            f"the samples table has no column(s) {', '.join(missing)}: it was written by an older "
            "ingest. Re-run ingest (`dvc repro ingest` or `metallo ingest`), then convert."
        )
    sixteen = samples.loc[samples["image_bit_depth"].astype(int) == 16, "image_max_value"].astype(int)
    max_value = int(sixteen.max()) if len(sixteen) else None
    used = bits_for_max(max_value) if max_value is not None else None
    bits = setting if setting != "auto" else (used or 16)
    if used is not None and used < LOW_BIT_WARNING:
        print(
            f"convert: WARNING: the {len(sixteen)} 16-bit image(s) use only {used} bits (largest value "
            f"{max_value}); they are scaled with bit_depth {bits}. Check that they are not 8-bit data or "
            "badly under-exposed, and set convert.bit_depth in params.yaml to the camera's bit depth if auto "
            "guessed wrong."
        )
    if max_value is not None and max_value > (1 << bits) - 1:
        clipped = int((sixteen > (1 << bits) - 1).sum())
        print(
            f"convert: WARNING: {clipped} 16-bit image(s) hold values above {(1 << bits) - 1} "
            f"(largest {max_value}), which convert.bit_depth: {bits} clips to white; use auto or a larger value."
        )
    return {
        "bit_depth": int(bits),
        "bit_depth_param": setting,
        "images_16bit": int(len(sixteen)),
        "max_value_16bit": max_value,
    }


def depth_text(depth: dict) -> str:
    """What convert did to the pixel values, for its summary line: 8-bit images are kept as they are."""
    n = int(depth.get("images_16bit", 0))
    if not n:
        return "8-bit images kept as they are"
    return f"{n} 16-bit image(s) scaled to 8 bits as {depth['bit_depth']}-bit data"


def load_convert_info(processed: str | os.PathLike) -> dict:
    """``convert.json`` of a processed folder: fit, resize, crop, bit_depth (and provenance)."""
    path = Path(processed) / CONVERT_INFO
    if not path.is_file():
        raise MetalloError(
            f"{path} not found: the processed data was written by an older convert. "
            "Re-run convert (`dvc repro convert`)."
        )
    return read_json(path)


def grid_extents(processed: str | os.PathLike) -> np.ndarray:
    """(N, 4) where each processed sample's measurement grid lies in its image (:data:`GRID_COLUMNS`)."""
    samples = pd.read_parquet(Path(processed) / SAMPLES_FILE, columns=list(GRID_COLUMNS))
    return samples[list(GRID_COLUMNS)].to_numpy(dtype=np.float64)


def processor_settings(processed: str | os.PathLike) -> dict:
    """The keyword arguments ``MetalloProcessor.from_stats`` needs from convert: fit, resize, crop, bit_depth."""
    info = load_convert_info(processed)
    return {key: info[key] for key in ("fit", "resize", "crop", "bit_depth")}


def _create_npy(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """Create an .npy file of ``shape`` (sparse, zero-filled) and return its data offset."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    offset = array.offset
    del array
    return offset


def _describe(row: int | None, sample_id: str) -> str:
    return f"manifest row {row} ({sample_id})" if row is not None else f"sample {sample_id!r}"


def _convert_one(task: tuple) -> int:
    """Decode sample ``i`` and write its rows into the two arrays (runs in a worker process)."""
    (i, where, files, geometry, bit_depth, spectra_shape, images_file, images_offset, spectra_file, spectra_offset) = (
        task
    )
    for relative, path, digest in files:
        if digest is not None:
            try:
                actual = sha256_file(path)
            except OSError as err:
                actual = f"unreadable ({err.strerror or err})"
            if actual != digest:
                raise MetalloError(
                    f"convert: {where}: {relative} changed after ingest (its SHA-256 no longer matches the one "
                    "ingest recorded). Re-run ingest (`dvc repro ingest` or `metallo ingest`) to validate the "
                    "new file, then convert."
                )
    (image_rel, image_path, _), (spectra_rel, spectra_path, _) = files
    try:
        pixels = geometry.apply(read_image_rgb(image_path, bit_depth=bit_depth))
    except SampleError as err:
        raise MetalloError(
            f"convert: {where}: {image_rel}: {err}. Fix the file and re-run ingest, then convert."
        ) from None
    try:
        spectra = read_spectra(spectra_path, spectra_shape)
    except SampleError as err:
        raise MetalloError(
            f"convert: {where}: {spectra_rel}: {err}. Fix the file and re-run ingest, then convert."
        ) from None
    for file, offset, row in ((images_file, images_offset, pixels), (spectra_file, spectra_offset, spectra)):
        data = np.ascontiguousarray(row).tobytes()
        fd = os.open(file, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset + i * len(data))
        finally:
            os.close(fd)
    return i


def _resolve(raw_dir, relative: str, where: str) -> Path:
    try:
        return resolve_inside(raw_dir, relative)
    except (PathEscapeError, RuntimeError) as err:
        raise MetalloError(f"convert: {where}: {relative}: {err}. Re-run ingest, then convert.") from None


def convert(
    samples: pd.DataFrame,
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    geometry: Geometry,
    spectra_shape: tuple[int, int],
    bit_depth: int = 16,
    workers: int | None = None,
    show_progress: bool | None = None,
) -> pd.DataFrame:
    """Write ``images.npy``, ``spectra.npy`` (row i ↔ array row i) into ``out_dir``; return the samples table.

    Each file's SHA-256 is checked against the one ingest recorded (columns ``image_sha256``,
    ``spectra_sha256``, when present). The returned table adds ``index`` and, when the samples
    carry ``width``/``height``, the grid extent columns :data:`GRID_COLUMNS`.
    """
    out_dir = Path(out_dir)
    n = len(samples)
    if n == 0:
        raise MetalloError("convert has no accepted samples to convert; check data/interim/rejected.csv.")
    table = samples.reset_index(drop=True).copy()
    with atomic_path(out_dir / IMAGES_FILE) as images_tmp, atomic_path(out_dir / SPECTRA_FILE) as spectra_tmp:
        images_offset = _create_npy(images_tmp, np.dtype(np.uint8), (n, geometry.crop, geometry.crop, 3))
        spectra_offset = _create_npy(spectra_tmp, np.dtype(np.float32), (n, *spectra_shape))
        outputs = (str(images_tmp), images_offset, str(spectra_tmp), spectra_offset)
        tasks = _tasks(table, raw_dir, (geometry, int(bit_depth), tuple(spectra_shape)), outputs)
        for _ in map_ordered(
            _convert_one,
            tasks,
            workers=workers,
            desc="convert",
            show_progress=show_progress,
            memory_per_worker=DECODE_MEMORY_BYTES,
        ):
            pass
    table.insert(0, "index", np.arange(n, dtype=np.int64))
    if {"width", "height"} <= set(table.columns):
        _add_grid_extents(table, geometry)
    return table


def _tasks(table: pd.DataFrame, raw_dir, settings: tuple, outputs: tuple) -> list[tuple]:
    """One :func:`_convert_one` task per row: its files (relative, resolved, recorded digest), then
    ``settings`` (geometry, bit depth, spectra shape) and ``outputs`` (each array's file and data offset)."""
    has_digest = {"image_sha256", "spectra_sha256"} <= set(table.columns)
    tasks = []
    for i, row in enumerate(table.to_dict("records")):
        where = _describe(row.get("row"), row.get("sample_id"))
        files = tuple(
            (row[column], _resolve(raw_dir, row[column], where), row[f"{column}_sha256"] if has_digest else None)
            for column in ("image", "spectra")
        )
        tasks.append((i, where, files, *settings, *outputs))
    return tasks


def _add_grid_extents(table: pd.DataFrame, geometry: Geometry) -> None:
    """Add :data:`GRID_COLUMNS`: each sample's frame in normalised output coordinates."""
    extents = np.array(
        [geometry.grid_extent(int(w), int(h)) for w, h in zip(table["width"], table["height"])], dtype=np.float64
    ).reshape(len(table), 4)
    for k, column in enumerate(GRID_COLUMNS):
        table[column] = extents[:, k]


def run_convert(params: dict, paths: Paths = PATHS) -> int:
    """Decode accepted samples into .npy arrays. Reads ``convert``, ``ingest.raw_dir``, ``data``.

    Writes ``images.npy``, ``spectra.npy``, ``samples.parquet`` and ``convert.json`` into
    ``paths.processed``.
    """
    cfg = ConvertParams.from_params(params)
    geometry = Geometry(resize=cfg.resize, crop=cfg.crop, fit=cfg.fit)
    shape = DataShape.from_params(params)
    samples = pd.read_parquet(paths.accepted)
    depth = resolve_bit_depth(samples, cfg.bit_depth)
    table = convert(
        samples,
        section(params, "ingest")["raw_dir"],
        paths.processed,
        geometry=geometry,
        spectra_shape=shape.spectra,
        bit_depth=depth["bit_depth"],
        workers=cfg.workers,
    )
    write_parquet(paths.samples, table)
    write_json(paths.processed / CONVERT_INFO, {**geometry.to_dict(), **depth, "grid": list(shape.grid)})
    print(
        f"convert: {len(table)} samples -> {paths.processed}/images.npy, spectra.npy "
        f"(fit {geometry.fit}, {geometry.crop}x{geometry.crop}, {depth_text(depth)})"
    )
    return len(table)
