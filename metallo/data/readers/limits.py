"""The size limits every micrograph passes from its header, before any pixel is decoded."""

from __future__ import annotations

from metallo.data.readers.files import SampleError

#: Largest image (width × height) that is decoded; PIL's own bomb limit stays on as well.
MAX_PIXELS = 50_000_000
#: Largest decoded size, bytes (width × height × samples × bytes per sample, as the file stores them):
#: an 8-bit RGB frame at :data:`MAX_PIXELS`. A 16-bit RGB frame may have half as many pixels.
MAX_DECODED_BYTES = 3 * MAX_PIXELS
#: Memory one worker may need to decode, scale and resize one image at the limits (bytes): measured
#: about 350 MB above the worker's own for a 7000 x 7000 8-bit RGB PNG and 200 MB for a 5000 x 5000
#: 16-bit RGB TIFF (docs/reliability.md); ingest and convert size their worker pools with it.
DECODE_MEMORY_BYTES = 4 * MAX_DECODED_BYTES
#: Shortest accepted image side, pixels: a thinner frame cannot be resized to the model's input.
MIN_SIDE = 16
#: Largest accepted ratio of the long to the short side (a micrograph is roughly square or 4:3).
MAX_ASPECT = 8.0


def check_image_size(width: int, height: int, decoded_bytes: int | None = None) -> None:
    """Refuse a frame too large to decode, thinner than MIN_SIDE or more elongated than MAX_ASPECT.

    ``decoded_bytes``, when the header tells it, is the size the decoded pixels would take.
    """
    if width * height > MAX_PIXELS:
        raise SampleError(
            f"image is {width}x{height} = {width * height:,} pixels, above the "
            f"decompression-bomb limit of {MAX_PIXELS:,}; downscale it first"
        )
    if decoded_bytes is not None and decoded_bytes > MAX_DECODED_BYTES:
        raise SampleError(
            f"image is {width}x{height} pixels with a decoded size of {decoded_bytes:,} bytes, above the "
            f"limit of {MAX_DECODED_BYTES:,} bytes (a decompression bomb, or too large a frame); downscale it first"
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
