"""Micrographs: PNG or single-page TIFF, 8-bit or 16-bit, greyscale or colour, decoded safely.

The format is recognised from the file's first bytes (not the suffix). The header's size, aspect,
decoded size and mode are checked before any pixel is decoded, so a decompression bomb is never
decoded. Decoders: ``tifffile`` (+ ``imagecodecs``) for TIFF, libpng (``imagecodecs``) for 16-bit
PNG, Pillow for 8-bit PNG; no hand-written decoder.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from struct import error as struct_error

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from metallo.data.readers.files import SampleError, _check_file
from metallo.data.readers.limits import (  # noqa: F401  (re-exported)
    DECODE_MEMORY_BYTES,
    MAX_ASPECT,
    MAX_DECODED_BYTES,
    MAX_PIXELS,
    MIN_SIDE,
    check_image_size,
)
from metallo.data.readers.png import SAMPLES, PngHeader, png_header, read_png16
from metallo.data.readers.tiff import read_tiff

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: First bytes of a TIFF file (little- and big-endian, classic and BigTIFF).
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: Modes of 8-bit PNGs accepted (PIL names): RGB/RGBA/L/LA and palette. 16-bit PNGs (grey, grey+alpha,
#: RGB, RGBA) are decoded at full depth by libpng (:mod:`metallo.data.readers.png`), TIFFs by tifffile.
ACCEPTED_MODES = ("RGB", "RGBA", "L", "LA", "P", "PA")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")
#: Values :func:`scale_to_8bit` widens at a time (4 MB of uint32).
SCALE_BLOCK = 1 << 20

ImageFile.LOAD_TRUNCATED_IMAGES = False


def bits_for_max(max_value: int) -> int:
    """Bits needed to hold ``max_value``, clamped to 8..16: ``clamp(ceil(log2(max + 1)), 8, 16)``."""
    return min(16, max(8, int(max_value).bit_length()))


def scale_to_8bit(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """``value * 255 / (2**bit_depth - 1)``, rounded half up and clipped to 0..255, as uint8."""
    if not 8 <= int(bit_depth) <= 16:
        raise ValueError(f"bit_depth must be 8..16; got {bit_depth!r}")
    top = (1 << int(bit_depth)) - 1
    values = np.asarray(values)
    out = np.empty(values.shape, dtype=np.uint8)
    flat_in, flat_out = values.reshape(-1), out.reshape(-1)
    for start in range(0, flat_in.size, SCALE_BLOCK):  # in blocks: a full-size wide copy would be 4x the image
        wide = flat_in[start : start + SCALE_BLOCK].clip(0, top).astype(np.uint32)  # 65535*510+65535 < 2**32
        flat_out[start : start + SCALE_BLOCK] = (wide * 510 + top) // (2 * top)
    return out


@dataclass
class StoredImage:
    """A decoded image as the file stores it: 8-bit (a PIL image) or 16-bit (a uint16 array).

    ``bits`` is the stored bit depth (8 or 16); ``max_value`` the largest pixel value over the
    colour channels (alpha ignored), on the stored scale.
    """

    width: int
    height: int
    format: str
    bits: int
    max_value: int
    image8: Image.Image | None = None  # 8-bit images: the decoded PIL image
    values16: np.ndarray | None = None  # 16-bit images: uint16 H×W or H×W×3

    def rgb8(self, bit_depth: int = 16) -> Image.Image:
        """8-bit RGB; 16-bit values are scaled with ``bit_depth`` (8-bit images are unchanged)."""
        if self.values16 is None:
            return to_rgb8(self.image8)
        scaled = scale_to_8bit(self.values16, bit_depth)
        if scaled.ndim == 2:
            return Image.fromarray(scaled, mode="L").convert("RGB")
        return Image.fromarray(scaled, mode="RGB")


def _sniff_format(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    if head == PNG_SIGNATURE:
        return "PNG"
    if head[:4] in TIFF_SIGNATURES:
        return "TIFF"
    raise SampleError(f"image is not a PNG or TIFF file (unrecognised first bytes): {path.name}")


def read_image(path: str | os.PathLike) -> StoredImage:
    """Open and fully decode a PNG or single-page TIFF micrograph, after checking its header.

    The format comes from the file's first bytes; size, aspect, decoded size and mode are checked
    before any pixel is decoded.
    """
    path = Path(path)
    _check_file(path, "image")
    fmt = _sniff_format(path)
    try:
        if fmt == "TIFF":
            return _stored(read_tiff(path), fmt)
        header = png_header(path)
        if header.bit_depth == 16:
            return _stored(read_png16(path, header), fmt)
        return _read_8bit_png(path, header)
    except SampleError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise SampleError(f"image rejected as a decompression bomb: {err}") from None
    except UnidentifiedImageError:
        raise SampleError(f"image cannot be decoded as {fmt}: {path.name}") from None
    except MemoryError:
        raise SampleError("image needs more memory to decode than this machine has; downscale it first") from None
    except (OSError, SyntaxError, ValueError, EOFError, KeyError, IndexError, struct_error, RuntimeError) as err:
        # RuntimeError: imagecodecs' codec errors (LZW, deflate, PNG, ...); ValueError: tifffile's
        raise SampleError(f"image is corrupt or truncated ({type(err).__name__}: {err})") from None


def _read_8bit_png(path: Path, header: PngHeader) -> StoredImage:
    samples = SAMPLES.get(header.colour_type, 4)
    check_image_size(header.width, header.height, header.width * header.height * samples)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(path, formats=["PNG"])
        try:
            if image.mode not in ACCEPTED_MODES:
                raise SampleError(
                    f"image mode {image.mode!r} is not supported (use 8-bit RGB/RGBA/L/LA, palette, "
                    "or 16-bit grey/RGB/RGBA)"
                )
            image.load()
            rgb = to_rgb8(image)
        finally:
            image.close()  # a rejected file must not keep its descriptor open
    max_value = max(high for _, high in rgb.getextrema())  # no full-size array copy
    return StoredImage(header.width, header.height, "PNG", 8, int(max_value), image8=rgb)


def _stored(values: np.ndarray, fmt: str) -> StoredImage:
    """A decoded uint8/uint16 H×W or H×W×3 array as a :class:`StoredImage`."""
    height, width = values.shape[:2]
    max_value = int(values.max()) if values.size else 0
    if values.dtype == np.uint16:
        return StoredImage(width, height, fmt, 16, max_value, values16=values)
    image = Image.fromarray(values, mode="L" if values.ndim == 2 else "RGB").convert("RGB")
    return StoredImage(width, height, fmt, 8, max_value, image8=image)


def read_image_rgb(path: str | os.PathLike, *, bit_depth: int = 16) -> Image.Image:
    """Open a PNG or TIFF micrograph and return it as 8-bit RGB.

    16-bit images are scaled with ``bit_depth`` (see :func:`scale_to_8bit`); alpha is dropped;
    palette images are expanded.
    """
    return read_image(path).rgb8(bit_depth)


def to_rgb8(image: Image.Image, bit_depth: int = 16) -> Image.Image:
    """Convert any accepted PIL mode to 8-bit RGB (16-bit greyscale scaled with ``bit_depth``)."""
    if image.mode in SIXTEEN_BIT_MODES:
        image = Image.fromarray(scale_to_8bit(np.asarray(image), bit_depth), mode="L")
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    return image.convert("RGB")
