"""Readers for one sample's files, shared by ingest (validation), convert and predict.

They never unpickle anything and never decode an image whose header announces more
pixels than :data:`MAX_PIXELS` (a decompression bomb). Problems raise :class:`SampleError`
with a short reason that ends up in ``rejected.csv``.
"""
from __future__ import annotations

import os
import tokenize
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Largest image (width × height) that is decoded; PIL's own bomb limit stays on as well.
MAX_PIXELS = 50_000_000
#: PNG modes accepted (PIL names): 8-bit RGB/RGBA/L/LA, palette, and 16-bit greyscale.
ACCEPTED_MODES = ("RGB", "RGBA", "L", "LA", "P", "PA", "I;16", "I;16B", "I;16L", "I")

ImageFile.LOAD_TRUNCATED_IMAGES = False


class SampleError(ValueError):
    """One sample's file is unusable; the message is the reason shown to the user."""


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise SampleError(f"{what} file not found: {path.name}")
    if not path.is_file():
        raise SampleError(f"{what} path is not a regular file: {path.name}")
    if os.path.getsize(path) == 0:
        raise SampleError(f"{what} file is empty (0 bytes): {path.name}")


def read_image_rgb(path: str | os.PathLike) -> Image.Image:
    """Open a PNG micrograph and return it decoded as 8-bit RGB.

    16-bit greyscale is scaled to 8 bits (value // 257); alpha is dropped; palette images are
    expanded. The header's size is checked before any pixel is decoded.
    """
    path = Path(path)
    _check_file(path, "image")
    with open(path, "rb") as f:
        if f.read(8) != PNG_SIGNATURE:
            raise SampleError(f"image is not a PNG file: {path.name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            try:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise SampleError(
                        f"image is {width}x{height} = {width * height:,} pixels, above the "
                        f"decompression-bomb limit of {MAX_PIXELS:,}; downscale it first"
                    )
                if image.mode not in ACCEPTED_MODES:
                    raise SampleError(f"image mode {image.mode!r} is not supported (use 8-bit RGB/RGBA/L, palette or 16-bit L)")
                image.load()
            except BaseException:
                image.close()  # a rejected file must not keep its descriptor open
                raise
    except SampleError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise SampleError(f"image rejected as a decompression bomb: {err}") from None
    except UnidentifiedImageError:
        raise SampleError(f"image cannot be decoded as PNG: {path.name}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise SampleError(f"image is corrupt or truncated ({err})") from None
    try:
        return to_rgb8(image)
    finally:
        image.close()  # to_rgb8 returns a new image; an animated PNG keeps its file open until closed


def to_rgb8(image: Image.Image) -> Image.Image:
    """Convert any accepted mode to 8-bit RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray((values // 257).clip(0, 255).astype(np.uint8), mode="L")
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    return image.convert("RGB")


def read_spectra(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """Load a spectra file (``.npy`` float32/float64, or headerless ``.csv``) as float32 ``shape``."""
    path = Path(path)
    _check_file(path, "spectra")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            header = _npy_header(path)
            if header is not None:  # check dtype and shape before any data is read or allocated
                _check_npy_dtype(header[1])
                _check_shape(header[0], shape)
            array = np.load(path, allow_pickle=False)
        except SampleError:
            raise
        except ValueError as err:
            if "pickle" in str(err).lower():
                raise SampleError("spectra .npy holds Python objects (pickled); save a plain float array") from None
            raise SampleError(f"spectra .npy cannot be read ({err})") from None
        except (OSError, EOFError) as err:
            raise SampleError(f"spectra .npy is corrupt or truncated ({err})") from None
        except tokenize.TokenError as err:  # numpy tokenizes the header; a garbled one raises this
            raise SampleError(f"spectra .npy cannot be read (corrupt header: {err})") from None
        if not isinstance(array, np.ndarray):
            raise SampleError(f"spectra .npy has dtype {type(array).__name__}; expected float32 or float64")
        _check_npy_dtype(array.dtype)
    elif suffix == ".csv":
        try:
            array = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2, encoding="utf-8")
        except UnicodeDecodeError:
            raise SampleError("spectra CSV is not UTF-8 text") from None
        except ValueError as err:
            raise SampleError(f"spectra CSV has a non-number or ragged line ({err})") from None
    else:
        raise SampleError(f"spectra format {suffix or '(no suffix)'!r} is not supported; use .npy or .csv")
    _check_shape(array.shape, shape)
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise SampleError(f"spectra contains {bad} non-finite value(s) (NaN or inf)")
    return array.astype(np.float32, copy=False)


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype] | None:
    """``(shape, dtype)`` from a .npy header without reading the data; None if not a .npy file.

    A header can announce any shape; checking it first keeps a 100-byte file from making
    ``np.load`` allocate terabytes (the .npy analogue of a decompression bomb).
    """
    with open(path, "rb") as f:
        if f.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
            return None  # np.load reports it (pickle, zip, ...)
        f.seek(0)
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):  # 3.0 differs from 2.0 only in allowing UTF-8 field names
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            return None  # np.load reports the unsupported version
    return tuple(shape), dtype


def _check_npy_dtype(dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise SampleError("spectra .npy holds Python objects (pickled); save a plain float array")
    if dtype not in (np.float32, np.float64):
        raise SampleError(f"spectra .npy has dtype {dtype}; expected float32 or float64")


def _check_shape(actual: tuple[int, ...], shape: tuple[int, int]) -> None:
    if tuple(actual) != tuple(shape):
        raise SampleError(f"spectra has shape {tuple(actual)}, expected {tuple(shape)} (data.n_spectra, data.spectrum_length)")
