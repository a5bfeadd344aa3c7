"""Builders for the data-stage tests (ingest, bad-input corpus, convert/split).

Everything writes real files into a temporary folder: tiny PNGs in every accepted mode,
spectra as ``.npy``/``.csv``, hand-written manifests, and hostile files (truncated PNGs,
decompression bombs, pickled arrays, ...). Sizes are tiny so the tests stay fast.
"""

from __future__ import annotations

import csv
import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from metallo.data.synthesize import synthesize
from metallo.layout import Paths

#: (n_spectra, spectrum_length) and grid used by the tests: 6 spectra of 20 points on a 3 x 2 grid.
SHAPE = (6, 20)
GRID = (3, 2)
COLUMNS = ("sample_id", "slice_id", "image", "spectra", "dos")
#: manifest line of data row 0 (line 1 is the header)
FIRST_ROW = 2


def synthesize_raw(out: Path, **kwargs):
    """:func:`metallo.data.synthesize.synthesize` into ``out`` as the tests call it: one worker, no progress bar."""
    return synthesize(out, **{"workers": 1, "progress": False, **kwargs})


def data_params(shape: tuple[int, int] = SHAPE, grid: tuple[int, int] = GRID) -> dict:
    return {"n_spectra": shape[0], "spectrum_length": shape[1], "grid": list(grid)}


def make_paths(root: Path) -> Paths:
    """A :class:`Paths` whose every folder lies under ``root``."""
    return Paths(
        synthetic=root / "synthetic",
        interim=root / "interim",
        processed=root / "processed",
        split=root / "split",
        model=root / "model",
        checkpoints=root / "checkpoints",
        metrics=root / "metrics",
    )


def make_params(
    raw_dir: Path,
    *,
    on_error: str = "skip",
    shape: tuple[int, int] = SHAPE,
    grid: tuple[int, int] = GRID,
    resize: int = 16,
    crop: int = 12,
    workers: int = 1,
    train_slices=("1",),
    test_slices=("2",),
    val_fraction: float = 0.05,
    seed: int = 0,
    fit: str = "full",
    bit_depth: str | int = "auto",
) -> dict:
    return {
        "data": data_params(shape, grid),
        "ingest": {"raw_dir": str(raw_dir), "on_error": on_error},
        "convert": {"fit": fit, "resize": resize, "crop": crop, "bit_depth": bit_depth, "workers": workers},
        "split": {
            "train_slices": list(train_slices),
            "test_slices": list(test_slices),
            "val_fraction": val_fraction,
            "seed": seed,
        },
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, keyed by relative path."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------
# images
# ------------------------------------------------------------------------------------------------


def image_array(mode: str, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Random pixels for ``mode`` at ``size`` = (width, height)."""
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        return rng.integers(0, 65536, (h, w), dtype=np.uint16)
    channels = {"RGB": 3, "RGBA": 4, "L": None, "P": None, "LA": 2}[mode]
    shape = (h, w) if channels is None else (h, w, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def make_image(mode: str = "RGB", size: tuple[int, int] = (24, 20), seed: int = 0) -> Image.Image:
    array = image_array(mode, size, seed)
    if mode == "I;16":
        return Image.fromarray(array)  # PIL picks mode I;16 for uint16 2-D arrays
    if mode == "P":
        return Image.fromarray(array, mode="L").convert("RGB").quantize(colors=16)
    return Image.fromarray(array, mode=mode)


def png_bytes(mode: str = "RGB", size: tuple[int, int] = (24, 20), seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    make_image(mode, size, seed).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: Path, mode: str = "RGB", size: tuple[int, int] = (24, 20), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(mode, size, seed))
    return path


def bomb_png(width: int, height: int) -> bytes:
    """A tiny real PNG whose IHDR (with a valid CRC) claims ``width`` x ``height`` pixels.

    The file is a few hundred bytes; decoding it would need width*height*3 bytes of memory.
    """
    data = bytearray(png_bytes("RGB", (8, 8)))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


# ------------------------------------------------------------------------------------------------
# spectra
# ------------------------------------------------------------------------------------------------


def spectra_array(shape: tuple[int, ...] = SHAPE, seed: int = 0, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.5, 0.1, shape).astype(dtype)


def write_spectra(path: Path, array: np.ndarray) -> Path:
    """``.npy`` (no pickle) or headerless ``.csv`` by the suffix of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, array, allow_pickle=False)
    else:
        np.savetxt(path, np.atleast_2d(array), delimiter=",", fmt="%.9g")
    return path


def npy_header_bytes(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    """A .npy header announcing ``shape`` (followed by a few bytes, not the data it announces)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + b"\0" * 64


# ------------------------------------------------------------------------------------------------
# raw folders
# ------------------------------------------------------------------------------------------------


def write_manifest(raw: Path, rows: list[dict] | list[list], header=COLUMNS) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    path = raw / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([row[c] for c in header] if isinstance(row, dict) else row)
    return path


class RawFolder:
    """A raw data folder under construction: add rows, then :meth:`write` the manifest."""

    def __init__(self, root: Path, shape: tuple[int, int] = SHAPE):
        self.root = Path(root)
        self.shape = shape
        self.rows: list[dict] = []
        (self.root / "images").mkdir(parents=True, exist_ok=True)
        (self.root / "spectra").mkdir(parents=True, exist_ok=True)

    def add(self, sample_id: str, image: str, spectra: str, dos: str = "1.5", slice_id: str = "1") -> dict:
        row = {"sample_id": sample_id, "slice_id": slice_id, "image": image, "spectra": spectra, "dos": dos}
        self.rows.append(row)
        return row

    def good(
        self,
        sample_id: str,
        *,
        mode: str = "RGB",
        size: tuple[int, int] = (24, 20),
        spectra: str = "npy",
        dtype=np.float32,
        slice_id: str = "1",
        dos: str | None = None,
        image_name: str | None = None,
        spectra_name: str | None = None,
        seed: int | None = None,
    ) -> dict:
        """A valid sample: a PNG in ``mode`` and spectra as ``npy`` (``dtype``) or ``csv``."""
        seed = len(self.rows) if seed is None else seed
        image_rel = f"images/{image_name or sample_id + '.png'}"
        spectra_rel = f"spectra/{spectra_name or sample_id + '.' + spectra}"
        write_png(self.root / image_rel, mode, size, seed)
        write_spectra(self.root / spectra_rel, spectra_array(self.shape, seed, dtype))
        return self.add(sample_id, image_rel, spectra_rel, f"{1.0 + 0.25 * seed:.4f}" if dos is None else dos, slice_id)

    def image_file(self, name: str, content: bytes) -> str:
        (self.root / "images" / name).write_bytes(content)
        return f"images/{name}"

    def spectra_file(self, name: str, array: np.ndarray | None = None, content: bytes | None = None) -> str:
        path = self.root / "spectra" / name
        if content is not None:
            path.write_bytes(content)
        else:
            write_spectra(path, array)
        return f"spectra/{name}"

    def good_image(self, name: str, seed: int = 0) -> str:
        write_png(self.root / "images" / name, "RGB", (24, 20), seed)
        return f"images/{name}"

    def good_spectra(self, name: str, seed: int = 0) -> str:
        write_spectra(self.root / "spectra" / name, spectra_array(self.shape, seed))
        return f"spectra/{name}"

    def write(self) -> Path:
        return write_manifest(self.root, self.rows)

    def row_of(self, sample_id: str) -> int:
        """Manifest line of the first row with ``sample_id``."""
        return next(FIRST_ROW + i for i, r in enumerate(self.rows) if r["sample_id"] == sample_id)


# ------------------------------------------------------------------------------------------------
# TIFF (written by hand: baseline, uncompressed, so 16-bit RGB and multi-page files are possible)
# ------------------------------------------------------------------------------------------------


def tiff_bytes(pages: list[np.ndarray], byteorder: str = "<") -> bytes:
    """A baseline uncompressed TIFF with one page per array (uint8/uint16, H×W grey or H×W×3 RGB)."""
    out = bytearray(b"II*\0" if byteorder == "<" else b"MM\0*")
    out += struct.pack(byteorder + "I", 0)
    next_pointer = 4
    for array in pages:
        array = np.ascontiguousarray(array)
        height, width = array.shape[:2]
        samples = 1 if array.ndim == 2 else array.shape[2]
        bits = array.dtype.itemsize * 8
        data = array.astype(array.dtype.newbyteorder(byteorder)).tobytes()
        out += b"\0" * (len(out) % 2)
        data_offset = len(out)
        out += data
        bits_value = bits
        if samples > 1:
            out += b"\0" * (len(out) % 2)
            bits_value = len(out)
            out += struct.pack(byteorder + "H" * samples, *([bits] * samples))
        tags = [
            (256, 4, 1, width),
            (257, 4, 1, height),
            (258, 3, samples, bits_value),
            (259, 3, 1, 1),
            (262, 3, 1, 1 if samples == 1 else 2),
            (273, 4, 1, data_offset),
            (277, 3, 1, samples),
            (278, 4, 1, height),
            (279, 4, 1, len(data)),
            (284, 3, 1, 1),
        ]
        out += b"\0" * (len(out) % 2)
        struct.pack_into(byteorder + "I", out, next_pointer, len(out))
        out += struct.pack(byteorder + "H", len(tags))
        for tag, kind, count, value in tags:
            if kind == 3 and count == 1:
                out += struct.pack(byteorder + "HHIHH", tag, kind, count, value, 0)
            else:
                out += struct.pack(byteorder + "HHII", tag, kind, count, value)
        next_pointer = len(out)
        out += struct.pack(byteorder + "I", 0)
    return bytes(out)


def write_tiff(path: Path, pages: list[np.ndarray] | np.ndarray, byteorder: str = "<") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tiff_bytes([pages] if isinstance(pages, np.ndarray) else pages, byteorder))
    return path


def thin_png(width: int, height: int) -> bytes:
    """A real (fully decodable) greyscale PNG of ``width`` x ``height``: tiny on disk when it is a line."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------
# reading a generated raw folder
# ------------------------------------------------------------------------------------------------


def read_manifest_rows(folder: Path) -> list[dict]:
    """The rows of ``folder/manifest.csv`` as dicts of strings."""
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_latents(folder: Path) -> dict[str, np.ndarray]:
    """``folder/latents.csv`` as one array of strings per column."""
    with open(folder / "latents.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}
