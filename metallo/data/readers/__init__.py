"""Readers for one sample's files, shared by ingest (validation), convert and predict.

They never unpickle anything and never decode an image whose header announces more pixels
than :data:`MAX_PIXELS` or more decoded bytes than :data:`MAX_DECODED_BYTES` (a decompression
bomb), or a frame thinner than :data:`MIN_SIDE` / more elongated than :data:`MAX_ASPECT`.
Problems raise :class:`SampleError` with a short reason that ends up in ``rejected.csv``.

Images are PNG or single-page TIFF, recognised from their first bytes (not the suffix),
8-bit or 16-bit, greyscale or colour. A 16-bit image is scaled to 8 bits with a bit depth
the caller passes in (``value * 255 / (2**bit_depth - 1)``, rounded, clipped): a 12-bit
camera saved as 16-bit keeps its 4096 levels' contrast. The readers hold no global state.

Modules: ``files`` (:class:`SampleError`, the regular-file check), ``limits`` (:data:`MAX_PIXELS`,
:data:`MAX_DECODED_BYTES`, :data:`MIN_SIDE`, :data:`MAX_ASPECT`), ``tiff`` (tifffile), ``png``
(16-bit PNG via libpng), ``images`` (micrographs: format sniffing, 8/16-bit, scaling), ``spectra`` (spectra files and
:data:`MAX_SPECTRA_ABS`). Every public name is importable from ``metallo.data.readers``.
"""

from metallo.data.readers.files import SampleError
from metallo.data.readers.images import (
    ACCEPTED_MODES,
    DECODE_MEMORY_BYTES,
    MAX_ASPECT,
    MAX_DECODED_BYTES,
    MAX_PIXELS,
    MIN_SIDE,
    PNG_SIGNATURE,
    SIXTEEN_BIT_MODES,
    TIFF_SIGNATURES,
    StoredImage,
    bits_for_max,
    check_image_size,
    read_image,
    read_image_rgb,
    scale_to_8bit,
    to_rgb8,
)
from metallo.data.readers.spectra import ACCEPTED_SPECTRA_DTYPES, MAX_SPECTRA_ABS, read_spectra

__all__ = [
    "ACCEPTED_MODES",
    "ACCEPTED_SPECTRA_DTYPES",
    "DECODE_MEMORY_BYTES",
    "MAX_ASPECT",
    "MAX_DECODED_BYTES",
    "MAX_PIXELS",
    "MAX_SPECTRA_ABS",
    "MIN_SIDE",
    "PNG_SIGNATURE",
    "SIXTEEN_BIT_MODES",
    "TIFF_SIGNATURES",
    "SampleError",
    "StoredImage",
    "bits_for_max",
    "check_image_size",
    "read_image",
    "read_image_rgb",
    "read_spectra",
    "scale_to_8bit",
    "to_rgb8",
]
