"""Where a micrograph, and the grid of spectra measured over it, land in the converted image.

The spectra grid covers the whole camera frame: spectrum ``k`` belongs to grid cell
``(k // cols, k % cols)`` of the source image. Convert maps each frame to a ``crop``×``crop``
image in one of two ways (``convert.fit``):

* ``full`` (the default): the whole frame is resized to ``crop``×``crop`` (the aspect ratio is
  not kept), so the grid spans the output exactly and every spectrum has its image region.
* ``crop``: the original system's geometry: resize the shorter side to ``resize`` (bilinear,
  antialiased), then centre-crop ``crop``×``crop``. The outer cells lie partly (for a 4:3
  frame largely) outside the output.

:meth:`Geometry.grid_extent` says where the source frame lies in normalised output
coordinates and :func:`cell_boxes` turns that into one pixel box per grid cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from metallo.errors import MetalloError

FIT_CHOICES = ("full", "crop")


@dataclass(frozen=True)
class Geometry:
    """How convert maps a frame to a ``crop``×``crop`` image (see the module docstring).

    Fields are ``resize``, ``crop``, ``fit``: keyword use (``Geometry(fit="crop", resize=336,
    crop=300)``) is clearest; ``Geometry(resize, crop)`` keeps working for older callers and
    means ``fit="full"``. ``resize`` only matters for ``fit="crop"``.
    """

    resize: int = 336
    crop: int = 300
    fit: str = "full"

    def __post_init__(self) -> None:
        if self.fit not in FIT_CHOICES:
            raise MetalloError(f"convert.fit must be one of {', '.join(FIT_CHOICES)}; got {self.fit!r}.")
        if not 0 < self.crop <= self.resize:
            raise MetalloError(
                f"convert.crop ({self.crop}) must be positive and at most convert.resize ({self.resize})."
            )

    def apply(self, image: Image.Image) -> np.ndarray:
        """Return the transformed RGB image as a uint8 crop×crop×3 array."""
        if self.fit == "full":
            image = TF.resize(
                image, [self.crop, self.crop], interpolation=TF.InterpolationMode.BILINEAR, antialias=True
            )
        else:
            image = TF.resize(image, [self.resize], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
            image = TF.center_crop(image, [self.crop])
        return np.array(image, dtype=np.uint8)  # a writable copy (torch refuses read-only arrays)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` after the resize step (torchvision's rule for the shorter side)."""
        if self.fit == "full":
            return self.crop, self.crop
        if width <= height:
            return self.resize, int(self.resize * height / width)
        return int(self.resize * width / height), self.resize

    def grid_extent(self, width: int, height: int) -> tuple[float, float, float, float]:
        """Where the source frame (= the measurement grid) lies in the output, normalised to 0..1.

        ``(x0, y0, x1, y1)``: ``(0, 0, 1, 1)`` for ``fit="full"``; for ``fit="crop"`` the frame
        extends beyond the output, e.g. ``(-0.06, -0.06, 1.06, 1.06)`` for a square frame with
        resize 336 and crop 300.
        """
        if self.fit == "full":
            return 0.0, 0.0, 1.0, 1.0
        new_w, new_h = self.resized_size(width, height)
        left = int(round((new_w - self.crop) / 2.0))  # torchvision's center_crop offsets
        top = int(round((new_h - self.crop) / 2.0))
        return (-left / self.crop, -top / self.crop, (new_w - left) / self.crop, (new_h - top) / self.crop)

    def to_dict(self) -> dict:
        return {"fit": self.fit, "resize": int(self.resize), "crop": int(self.crop)}


def cell_boxes(extent: tuple[float, float, float, float], grid: tuple[int, int], size: int) -> np.ndarray:
    """Pixel box ``[x0, x1) × [y0, y1)`` of every grid cell in the ``size``×``size`` output.

    Returns int64 ``(rows*cols, 4)`` with columns ``x0, y0, x1, y1``, row-major (spectrum ``k``
    is cell ``(k // cols, k % cols)``). Cell edges are rounded to the nearest pixel and the boxes
    clipped to the image; a cell entirely outside the output has an empty box (``x0 == x1`` or
    ``y0 == y1``).
    """
    rows, cols = (int(v) for v in grid)
    x0, y0, x1, y1 = (float(v) for v in extent)
    xs = np.rint((x0 + (x1 - x0) * np.arange(cols + 1) / cols) * size).clip(0, size).astype(np.int64)
    ys = np.rint((y0 + (y1 - y0) * np.arange(rows + 1) / rows) * size).clip(0, size).astype(np.int64)
    r, c = np.divmod(np.arange(rows * cols), cols)
    return np.stack([xs[c], ys[r], xs[c + 1], ys[r + 1]], axis=1)
