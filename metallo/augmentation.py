"""Training-only augmentation of raw batches on the device: lamp and spectrometer gains, optional flips.

The gains are not applied here: :class:`metallo.processing.MetalloProcessor` applies them (``image_gain``,
``spectra_gain``, ``spectra_offset``) before it normalises, so augmented and plain batches share one path.

What each transform does to the physics, and so what is on by default:

* **gains and offsets** (lamp brightness and colour, spectrometer gain, dark offset) change the instrument, not
  the specimen: on.
* **flips** move every cell to the mirrored cell (the spectra are moved with them, so each spectrum stays under
  the region it was measured over) and mirror every direction in the micrograph: a structure at +30 degrees to
  the x axis becomes one at -30 degrees, and the top row of cells becomes the bottom row. A label that depends on
  the direction of a structure relative to the specimen (rolling direction, a weld's axis) or on where on the
  specimen a cell lies (an edge, a gradient) is not invariant to a flip, so flips would teach the model a wrong
  label. Off by default; ``preprocess.augment_flips`` turns them on for data known to be mirror-symmetric.
* **rotations** by 90 degrees would also swap the grid's rows and columns (impossible for a non-square grid)
  and turn every direction; **crops** would move the grid off the region each spectrum was measured over. Not
  offered.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metallo.errors import MetalloError

#: ``preprocess.augment_flips``: none, left-right, up-down, or both (each drawn independently per sample).
FLIPS = ("none", "horizontal", "vertical", "both")


@dataclass(frozen=True)
class Augmentation:
    """Training-only jitter of raw inputs, as between specimens and sessions (``preprocess.augment_*``).

    Args:
        illumination: ± relative brightness of the whole micrograph (microscope lamp).
        colour: ± relative gain of each colour channel (the lamp's colour temperature).
        spectra_gain: ± relative spectrometer gain.
        spectra_offset: ± dark offset added to each spectrum, in units of its own std.
        flips: which random grid-consistent flips to apply (:data:`FLIPS`; see the module docstring).
    """

    illumination: float = 0.15
    colour: float = 0.06
    spectra_gain: float = 0.05
    spectra_offset: float = 0.0
    flips: str = "none"

    def __post_init__(self) -> None:
        if self.flips not in FLIPS:
            raise MetalloError(f"preprocess.augment_flips must be one of {', '.join(FLIPS)}; got {self.flips!r}.")
        for name in ("illumination", "colour", "spectra_gain"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise MetalloError(f"preprocess.augment_{name} must be in [0, 1); got {getattr(self, name)!r}.")
        if not 0.0 <= self.spectra_offset <= 10.0:
            raise MetalloError(f"preprocess.augment_spectra_offset must be in [0, 10]; got {self.spectra_offset!r}.")


def augment_batch(
    batch: dict, grid: tuple[int, int], ranges: Augmentation = Augmentation(), generator: torch.Generator | None = None
) -> dict:
    """Training augmentation of a raw batch: per-sample gains, plus the grid-consistent flips ``ranges`` allows.

    The random numbers are drawn on the batch's device (no host round trip); the processor
    applies the gains and offsets before normalising.
    """
    batch = flip_batch(batch, grid, generator, ranges.flips)
    size = batch["pixel_values"].shape[0]
    device = batch["pixel_values"].device

    def uniform(spread: float, *shape: int) -> torch.Tensor:
        return 2.0 * spread * torch.rand(size, *shape, generator=generator, device=device) - spread

    image_gain = (1.0 + uniform(ranges.illumination, 1)) * (1.0 + uniform(ranges.colour, 3))
    out = {**batch, "image_gain": image_gain, "spectra_gain": 1.0 + uniform(ranges.spectra_gain)}
    if ranges.spectra_offset:
        out["spectra_offset"] = uniform(ranges.spectra_offset)
    return out


def flip_batch(batch: dict, grid: tuple[int, int], generator: torch.Generator | None = None, flips="both") -> dict:
    """Random horizontal/vertical flips (those ``flips`` allows) that keep each spectrum under its grid cell.

    Works on uint8 B×H×W×3 images and B×S×L spectra (S = rows × cols, row-major), before
    normalisation. Each sample is flipped independently.
    """
    pixels, spectra = batch["pixel_values"], batch["spectra"]
    rows, cols = grid
    if flips == "none":
        return batch
    drawn = torch.rand(pixels.shape[0], 2, generator=generator, device=pixels.device) < 0.5
    on_grid = spectra.view(-1, rows, cols, spectra.shape[-1])
    for axis, (image_dim, grid_dim) in enumerate(((2, 2), (1, 1))):  # horizontal: width/cols; vertical: height/rows
        if flips not in ("both", ("horizontal", "vertical")[axis]):
            continue
        chosen = drawn[:, axis]
        pixels = torch.where(chosen.view(-1, 1, 1, 1), pixels.flip(image_dim), pixels)
        on_grid = torch.where(chosen.view(-1, 1, 1, 1), on_grid.flip(grid_dim), on_grid)
    return {**batch, "pixel_values": pixels, "spectra": on_grid.reshape(spectra.shape)}
