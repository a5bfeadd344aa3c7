"""16-bit PNG micrographs (grey, grey+alpha, RGB, RGBA), decoded at full depth by libpng through ``imagecodecs``.

Pillow keeps only the high byte of 16-bit colour PNGs, so only 8-bit PNGs go to Pillow. The
header (IHDR) is read first, so the size limits hold before any pixel is decoded.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np
from imagecodecs import png_decode

from metallo.data.readers.files import SampleError
from metallo.data.readers.limits import check_image_size

#: Samples per pixel of each PNG colour type (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA).
SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


class PngHeader(NamedTuple):
    width: int
    height: int
    bit_depth: int
    colour_type: int


def png_header(path: Path) -> PngHeader:
    """The IHDR chunk's width, height, bit depth and colour type."""
    with open(path, "rb") as f:
        head = f.read(29)
    if len(head) < 29 or head[12:16] != b"IHDR":
        raise SampleError("image is corrupt or truncated (PNG without an IHDR header)")
    return PngHeader(*struct.unpack(">IIBB", head[16:26]))


def read_png16(path: Path, header: PngHeader) -> np.ndarray:
    """A 16-bit PNG's colour values as uint16 H×W (grey) or H×W×3 (RGB); alpha dropped."""
    samples = SAMPLES.get(header.colour_type)
    if samples is None:
        raise SampleError(f"PNG colour type {header.colour_type} is not valid")
    check_image_size(header.width, header.height, header.width * header.height * samples * 2)
    values = png_decode(path.read_bytes())
    if values.dtype != np.uint16 or values.shape[:2] != (header.height, header.width):
        raise SampleError(f"image is corrupt (PNG decoded to {values.dtype} {values.shape}, header says otherwise)")
    if values.ndim == 3:
        values = values[..., :3] if samples >= 3 else values[..., 0]
    return np.ascontiguousarray(values)
