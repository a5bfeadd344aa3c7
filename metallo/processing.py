"""Batch-level preprocessing: uint8 micrographs and raw spectra → normalised model inputs.

Images stay uint8 (B×H×W×3) until they reach the device; :class:`MetalloProcessor` then
converts, resizes to the model's ``image_size``, normalises with the train-split statistics
and switches to channels-last, all as tensor operations on whole batches. The processor is
saved next to the model (``preprocessor_config.json``) so prediction applies exactly the
preprocessing training used.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from metallo.errors import MetalloError

PROCESSOR_FILE = "preprocessor_config.json"


@dataclass
class MetalloProcessor:
    """Normalisation statistics (train split only) and the geometry inputs went through.

    Args:
        image_mean, image_std: per-channel statistics of the uint8/255 training pixels.
        spectra_mean, spectra_std: per-wavelength statistics of the training spectra.
        image_size: side of the square image the model sees (the crop is resized to it).
        resize, crop, fit: the convert stage's geometry (:class:`metallo.data.geometry.Geometry`),
            applied to new images before this step. Models saved before ``fit`` existed used ``crop``.
        bit_depth: the bit depth convert scaled 16-bit images with (``convert.json``); prediction
            scales new 16-bit images the same way.
    """

    image_mean: list[float]
    image_std: list[float]
    spectra_mean: list[float]
    spectra_std: list[float]
    image_size: int
    resize: int = 336
    crop: int = 300
    fit: str = "crop"
    bit_depth: int = 16
    _buffers: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_stats(cls, stats: dict, *, image_size: int, resize: int, crop: int, fit: str = "crop",
                   bit_depth: int = 16) -> MetalloProcessor:
        return cls(stats["image"]["mean"], stats["image"]["std"], stats["spectra"]["mean"], stats["spectra"]["std"],
                   image_size=int(image_size), resize=int(resize), crop=int(crop), fit=str(fit),
                   bit_depth=int(bit_depth))

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        (Path(directory) / PROCESSOR_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> MetalloProcessor:
        path = Path(directory) / PROCESSOR_FILE
        if not path.is_file():
            raise MetalloError(f"{path} not found: {directory} is not a model directory written by Metallo's train stage.")
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        key = str(device)
        if key not in self._buffers:
            as_tensor = lambda v: torch.tensor(v, dtype=torch.float32, device=device)  # noqa: E731
            self._buffers[key] = (as_tensor(self.image_mean).view(1, 3, 1, 1), as_tensor(self.image_std).view(1, 3, 1, 1),
                                  as_tensor(self.spectra_mean), as_tensor(self.spectra_std))
        return self._buffers[key]

    def images(self, pixels: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 B×H×W×3 (any device) → normalised float B×3×s×s, channels-last.

        ``gain`` (B,) or (B, 3) scales each image's intensities (per channel) first: illumination
        and colour-balance augmentation.
        """
        if pixels.dim() != 4 or pixels.shape[-1] != 3:
            raise ValueError(f"pixels must be uint8 with shape (batch, height, width, 3); got {tuple(pixels.shape)}")
        mean, std, _, _ = self._tensors(pixels.device)
        x = pixels.permute(0, 3, 1, 2).float().div_(255.0)
        if gain is not None:
            x = (x * gain.view(gain.shape[0], -1, 1, 1)).clamp_(0.0, 1.0)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        x = (x - mean) / std
        return x.contiguous(memory_format=torch.channels_last)

    def spectra(self, spectra: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        """float B×S×L → per-wavelength standardised float32.

        ``gain`` (B,) scales each sample's spectra first (spectrometer-gain augmentation).
        """
        _, _, mean, std = self._tensors(spectra.device)
        if spectra.shape[-1] != mean.shape[0]:
            raise ValueError(f"spectra have length {spectra.shape[-1]}, but the processor was fitted on length {mean.shape[0]}")
        spectra = spectra.float()
        if gain is not None:
            spectra = spectra * gain.view(-1, 1, 1)
        return (spectra - mean) / std

    def __call__(self, batch: dict) -> dict:
        """Apply to a batch dict holding ``pixel_values`` (uint8) and ``spectra`` (raw).

        Optional ``image_gain`` / ``spectra_gain`` entries (from :func:`augment_batch`) are consumed.
        """
        out = dict(batch)
        image_gain, spectra_gain = out.pop("image_gain", None), out.pop("spectra_gain", None)
        if out.get("pixel_values") is not None:
            out["pixel_values"] = self.images(out["pixel_values"], image_gain)
        if out.get("spectra") is not None:
            out["spectra"] = self.spectra(out["spectra"], spectra_gain)
        return out


#: Relative ranges of the random gains drawn by :func:`augment_batch`: illumination (all channels),
#: colour balance (each channel: the lamp's colour temperature), spectrometer gain.
IMAGE_GAIN_RANGE = 0.15
COLOUR_GAIN_RANGE = 0.06
SPECTRA_GAIN_RANGE = 0.05


def augment_batch(batch: dict, grid: tuple[int, int], generator: torch.Generator | None = None) -> dict:
    """Training augmentation of a raw batch: grid-consistent flips plus per-sample gains.

    The gains mimic what differs between specimens and sessions (brightness and colour of the
    microscope's illumination, gain of the spectrometer); the processor applies them before
    normalising.
    """
    batch = flip_batch(batch, grid, generator)
    size = batch["pixel_values"].shape[0]
    device = batch["pixel_values"].device

    def uniform(spread: float, *shape: int) -> torch.Tensor:
        return (1.0 + spread * (2.0 * torch.rand(size, *shape, generator=generator) - 1.0)).to(device)

    image_gain = uniform(IMAGE_GAIN_RANGE, 1) * uniform(COLOUR_GAIN_RANGE, 3)
    return {**batch, "image_gain": image_gain, "spectra_gain": uniform(SPECTRA_GAIN_RANGE)}


def flip_batch(batch: dict, grid: tuple[int, int], generator: torch.Generator | None = None) -> dict:
    """Random horizontal/vertical flips that keep each spectrum under its grid cell.

    Works on uint8 B×H×W×3 images and B×S×L spectra (S = rows × cols, row-major), before
    normalisation. Each sample is flipped independently.
    """
    pixels, spectra = batch["pixel_values"], batch["spectra"]
    rows, cols = grid
    flips = (torch.rand(pixels.shape[0], 2, generator=generator) < 0.5).to(pixels.device)
    on_grid = spectra.view(-1, rows, cols, spectra.shape[-1])
    for axis, (image_dim, grid_dim) in enumerate(((2, 2), (1, 1))):  # horizontal: width/cols; vertical: height/rows
        chosen = flips[:, axis]
        pixels = torch.where(chosen.view(-1, 1, 1, 1), pixels.flip(image_dim), pixels)
        on_grid = torch.where(chosen.view(-1, 1, 1, 1), on_grid.flip(grid_dim), on_grid)
    return {**batch, "pixel_values": pixels, "spectra": on_grid.reshape(spectra.shape)}
