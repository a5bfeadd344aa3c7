"""Micrographs: PNG or single-page TIFF, 8-bit or 16-bit, greyscale or colour, decoded safely.

The format is recognised from the file's first bytes (not the suffix). The header's size, aspect
and mode are checked before any pixel is decoded, so a decompression bomb is never decoded.
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

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: First bytes of a TIFF file (little- and big-endian, classic and BigTIFF).
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: Largest image (width × height) that is decoded; PIL's own bomb limit stays on as well.
MAX_PIXELS = 50_000_000
#: Shortest accepted image side, pixels: a thinner frame cannot be resized to the model's input.
MIN_SIDE = 16
#: Largest accepted ratio of the long to the short side (a micrograph is roughly square or 4:3).
MAX_ASPECT = 8.0
#: Image modes accepted (PIL names): 8-bit RGB/RGBA/L/LA, palette, and 16-bit greyscale.
#: 16-bit RGB TIFFs open as "RGB" in PIL and are decoded at full depth here.
ACCEPTED_MODES = ("RGB", "RGBA", "L", "LA", "P", "PA", "I;16", "I;16B", "I;16L", "I")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")

ImageFile.LOAD_TRUNCATED_IMAGES = False


def check_image_size(width: int, height: int) -> None:
    """Refuse a frame too large to decode, thinner than MIN_SIDE or more elongated than MAX_ASPECT."""
    if width * height > MAX_PIXELS:
        raise SampleError(
            f"image is {width}x{height} = {width * height:,} pixels, above the "
            f"decompression-bomb limit of {MAX_PIXELS:,}; downscale it first"
        )
    short, long = min(width, height), max(width, height)
    if short < MIN_SIDE:
        raise SampleError(
            f"image is {width}x{height} pixels: its shorter side is below the minimum of "
            f"{MIN_SIDE} px (a line scan or a corrupt header?)"
        )
    if long > MAX_ASPECT * short:
        raise SampleError(
            f"image is {width}x{height} pixels: aspect ratio {long / short:.1f}:1 is above the "
            f"limit of {MAX_ASPECT:g}:1 (crop it to the micrograph)"
        )


def bits_for_max(max_value: int) -> int:
    """Bits needed to hold ``max_value``, clamped to 8..16: ``clamp(ceil(log2(max + 1)), 8, 16)``."""
    return min(16, max(8, int(max_value).bit_length()))


def scale_to_8bit(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """``value * 255 / (2**bit_depth - 1)``, rounded half up and clipped to 0..255, as uint8."""
    if not 8 <= int(bit_depth) <= 16:
        raise ValueError(f"bit_depth must be 8..16; got {bit_depth!r}")
    top = (1 << int(bit_depth)) - 1
    wide = np.asarray(values).astype(np.int64)
    return ((wide.clip(0, top) * 510 + top) // (2 * top)).astype(np.uint8)


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


def _tiff_bits(image: Image.Image) -> tuple[int, ...]:
    bits = image.tag_v2.get(258, (1,))  # BitsPerSample
    return tuple(bits) if isinstance(bits, tuple) else (int(bits),)


def _decode_rgb16_tiff(image: Image.Image) -> np.ndarray:
    """Decode a 16-bit-per-channel RGB TIFF at full depth (PIL alone would keep the high byte only).

    Each tile is decoded with PIL's own decoder into a 16-bit greyscale image three times as
    wide, i.e. the interleaved R, G, B samples, which is then reshaped to H×W×3.
    """
    width, height = image.size
    target = Image.new("I;16", (3 * width, height))
    for tile in image.tile:
        rawmode = tile.args[0] if isinstance(tile.args, tuple) else tile.args
        grey = {"RGB;16L": "I;16", "RGB;16N": "I;16N", "RGB;16B": "I;16B"}.get(rawmode)
        if grey is None:
            raise SampleError(f"16-bit colour TIFF layout {rawmode!r} is not supported; save it as interleaved RGB")
        args = (grey, *tile.args[1:]) if isinstance(tile.args, tuple) else grey
        decoder = Image._getdecoder("I;16", tile.codec_name, args)
        x0, y0, x1, y1 = tile.extents
        decoder.setimage(target.im, (3 * x0, y0, 3 * x1, y1))
        image.fp.seek(tile.offset)
        if getattr(decoder, "pulls_fd", False):
            decoder.setfd(image.fp)
            _, code = decoder.decode(b"")
        else:
            while True:
                data = image.fp.read(1 << 16)
                consumed, code = decoder.decode(data)
                if consumed < 0 or not data:
                    break
        decoder.cleanup()
        if code < 0:
            raise SampleError(f"image is corrupt or truncated (TIFF decoder error {code})")
    return np.asarray(target).reshape(height, width, 3).astype(np.uint16)


def read_image(path: str | os.PathLike) -> StoredImage:
    """Open and fully decode a PNG or single-page TIFF micrograph, after checking its header.

    The format comes from the file's first bytes; size, aspect and mode are checked before any
    pixel is decoded.
    """
    path = Path(path)
    _check_file(path, "image")
    fmt = _sniff_format(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path, formats=[fmt])
            try:
                return _decode(image, fmt)
            finally:
                image.close()  # a rejected file must not keep its descriptor open
    except SampleError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise SampleError(f"image rejected as a decompression bomb: {err}") from None
    except UnidentifiedImageError:
        raise SampleError(f"image cannot be decoded as {fmt}: {path.name}") from None
    except (OSError, SyntaxError, ValueError, EOFError, KeyError, IndexError, struct_error) as err:
        raise SampleError(f"image is corrupt or truncated ({type(err).__name__}: {err})") from None


def _decode(image: Image.Image, fmt: str) -> StoredImage:
    width, height = image.size
    check_image_size(width, height)
    if image.mode not in ACCEPTED_MODES:
        raise SampleError(
            f"image mode {image.mode!r} is not supported (use 8-bit RGB/RGBA/L, palette, or 16-bit greyscale/RGB)"
        )
    rgb16 = False
    if fmt == "TIFF":
        pages = getattr(image, "n_frames", 1)
        if pages != 1:
            raise SampleError(f"TIFF has {pages} pages; save one micrograph per single-page file")
        bits = _tiff_bits(image)
        if image.mode in ("RGB", "RGBA") and max(bits) > 8:
            if bits != (16, 16, 16):
                raise SampleError(
                    f"TIFF with {bits} bits per sample is not supported (use 8- or 16-bit RGB without alpha)"
                )
            rgb16 = True
    if rgb16:
        values = _decode_rgb16_tiff(image)
        return StoredImage(width, height, fmt, 16, int(values.max()), values16=values)
    image.load()
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image)
        if values.dtype.kind not in "ui" or (values.size and (values.min() < 0 or values.max() > 65535)):
            raise SampleError("image holds values outside 0..65535; save it as 8- or 16-bit")
        values = values.astype(np.uint16)
        return StoredImage(width, height, fmt, 16, int(values.max()), values16=values)
    rgb = to_rgb8(image)
    return StoredImage(width, height, fmt, 8, int(np.asarray(rgb).max()), image8=rgb)


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
