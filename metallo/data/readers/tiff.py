"""Single-page TIFF micrographs, decoded by ``tifffile`` (with ``imagecodecs`` for LZW, deflate, ...).

The first page's header is checked (one page, 8- or 16-bit unsigned samples, grey, RGB or palette,
size limits) before any pixel is decoded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tifffile

from metallo.data.readers.files import SampleError
from metallo.data.readers.limits import check_image_size

# tifffile logs a warning for each oddity of a damaged file; the reason reaches the user in the SampleError.
logging.getLogger("tifffile").setLevel(logging.ERROR)

PHOTOMETRIC = tifffile.PHOTOMETRIC
#: Photometric interpretations accepted, with the number of colour samples each has (others are alpha).
COLOUR_SAMPLES = {PHOTOMETRIC.MINISBLACK: 1, PHOTOMETRIC.PALETTE: 1, PHOTOMETRIC.RGB: 3}


def read_tiff(path: Path) -> np.ndarray:
    """The pixels as uint8 or uint16, H×W (grey) or H×W×3 (colour); alpha dropped, palettes expanded to 8-bit RGB."""
    with tifffile.TiffFile(path) as tif:
        if not len(tif.pages):
            raise SampleError("image is corrupt or truncated (a TIFF header without an image page)")
        if len(tif.pages) != 1:
            raise SampleError(f"TIFF has {len(tif.pages)} pages; save one micrograph per single-page file")
        page = tif.pages.first
        colour = _check_header(page)
        values = page.asarray(maxworkers=1)
        colormap = page.colormap
    if page.axes.startswith("S"):  # planar configuration "separate": samples first
        values = np.moveaxis(values, 0, -1)
    if values.ndim == 3:
        values = values[..., :colour] if colour == 3 else values[..., 0]
    if page.photometric == PHOTOMETRIC.PALETTE:
        values = (np.asarray(colormap)[:, values] >> 8).astype(np.uint8).transpose(1, 2, 0)
    return np.ascontiguousarray(values)


def _check_header(page) -> int:
    """Check the page's header; the number of colour samples per pixel."""
    if page.subifds:
        raise SampleError("TIFF holds sub-images (a pyramid); save one micrograph per single-page file")
    if page.imagedepth != 1:
        raise SampleError(f"TIFF is a volume of {page.imagedepth} slices; save one micrograph per single-page file")
    colour = COLOUR_SAMPLES.get(page.photometric)
    if page.photometric == PHOTOMETRIC.YCBCR and page.compression == tifffile.COMPRESSION.JPEG:
        colour = 3  # the JPEG codec returns RGB
    if colour is None or page.samplesperpixel < colour:
        name = getattr(page.photometric, "name", page.photometric)
        raise SampleError(
            f"TIFF colour model {name} with {page.samplesperpixel} sample(s) per pixel is not supported "
            "(use grey, RGB, RGBA or palette)"
        )
    dtype = page.dtype
    if dtype is None or dtype not in (np.uint8, np.uint16):
        kind = f"{dtype}" if dtype is not None else f"{page.bitspersample}-bit"
        raise SampleError(f"TIFF samples are {kind}; save the image with 8- or 16-bit unsigned integer samples")
    width, height = page.imagewidth, page.imagelength
    check_image_size(width, height, width * height * page.samplesperpixel * dtype.itemsize)
    return colour
