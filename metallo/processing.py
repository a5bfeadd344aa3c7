"""Batch-level preprocessing: uint8 micrographs and raw spectra → normalised model inputs.

Images stay uint8 (B×H×W×3) until they reach the device; :class:`MetalloProcessor` then
converts, resizes to the model's ``image_size``, normalises with the train-split statistics
and switches to channels-last, all as tensor operations on whole batches. The processor is
saved next to the model (``preprocessor_config.json``) so prediction applies exactly the
preprocessing training used.

:class:`MetalloProcessor` is a ``transformers`` image processor: ``import metallo.models`` registers it with
``AutoImageProcessor`` (see :mod:`metallo.hub`), ``save_pretrained``/``from_pretrained``/``push_to_hub``
come from ``transformers``, and ``processor(images, spectra=...)`` turns PIL images or uint8 arrays of any
size plus raw spectra into the model's inputs. Files written before it was one (no ``image_processor_type``
key) still load.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from metallo.data.geometry import FIT_CHOICES, Geometry
from metallo.errors import MetalloError
from metallo.layout import MAX_GEOMETRY_SIDE, MAX_IMAGE_SIZE
from metallo.spectra import snv

PROCESSOR_FILE = "preprocessor_config.json"
#: ``fit`` of processors saved before convert had the option: the original resize-and-crop geometry.
FIT_BEFORE_OPTION = "crop"


#: Per-spectrum normalisations (``preprocess.spectra``): ``snv`` = standard normal variate (each
#: spectrum minus its own mean, divided by its own std: removes spectrometer gain and dark offset),
#: then per-wavelength standardisation with train statistics; ``standard`` = per-wavelength
#: standardisation of the raw values only; ``none`` = raw values.
SPECTRA_NORMS = ("snv", "standard", "none")
#: Image normalisations (``preprocess.image``): ``dataset`` = per-channel standardisation with the
#: train split's statistics; ``per_image`` = each image first divided by its own 99th-percentile
#: intensity (removes the illumination level and camera gain), then the same standardisation;
#: ``none`` = intensities in [0, 1] (what the classical baseline reads).
IMAGE_NORMS = ("dataset", "per_image", "none")


def floored_std(std: list[float], relative_floor: float) -> list[float]:
    """Raise each per-wavelength std to at least ``relative_floor`` × the median std.

    A dead or saturated spectrometer channel has a std near zero; dividing by it would turn
    noise into huge inputs. The absolute 1e-12 keeps an all-constant input finite.
    """
    values = torch.tensor(std, dtype=torch.float64)
    floor = max(float(values.median()) * float(relative_floor), 1e-12)
    return values.clamp_min(floor).tolist()


@dataclass(repr=False)
class MetalloProcessor(BaseImageProcessor):
    """Normalisation statistics (train split only) and the geometry inputs went through.

    Args:
        image_mean, image_std: per-channel statistics of the uint8/255 training pixels.
        spectra_mean, spectra_std: per-wavelength statistics of the training spectra, in the space
            ``spectra_norm`` maps them to (after SNV for ``snv``).
        image_size: side of the square image the model sees (the crop is resized to it).
        resize, crop, fit: the convert stage's geometry (:class:`metallo.data.geometry.Geometry`),
            applied to new images before this step. Models saved before ``fit`` existed used ``crop``.
        bit_depth: the bit depth convert scaled 16-bit images with (``convert.json``); prediction
            scales new 16-bit images the same way.
        spectra_norm: one of :data:`SPECTRA_NORMS`.
        image_norm: one of :data:`IMAGE_NORMS`.
        raw_copies: also pass the model its inputs before normalisation: ``raw_pixel_values`` (intensities in
            [0, 1] at the stored ``crop`` resolution, 300 px on the demo) and ``raw_spectra`` (as measured).
            They are not spare copies: they are MetalloNet's own inputs. Its learned per-cell path cuts every
            measurement cell out of the stored-resolution image, standardised per image (``pixel_values``, resized
            to ``image_size`` and standardised with dataset statistics, is ToyNet's input; MetalloNet does not read
            it), and its
            closed-form classical branch computes hand-made texture and SNV-band features from the image and the
            spectra as measured. So ``model(**processor(images, spectra=spectra))`` works unchanged; ToyNet and
            the classical model set it false and get ``pixel_values`` and ``spectra`` only.
    """

    image_mean: list[float]
    image_std: list[float]
    spectra_mean: list[float]
    spectra_std: list[float]
    image_size: int
    resize: int = Geometry.resize
    crop: int = Geometry.crop
    fit: str = FIT_BEFORE_OPTION
    bit_depth: int = 16
    spectra_norm: str = "standard"
    image_norm: str = "dataset"
    raw_copies: bool = False
    _buffers: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    model_input_names = ["pixel_values", "spectra"]

    def __post_init__(self) -> None:
        self._check_fields()
        if self.spectra_norm not in SPECTRA_NORMS:
            raise MetalloError(
                f"preprocess.spectra must be one of {', '.join(SPECTRA_NORMS)}; got {self.spectra_norm!r}."
            )
        if self.image_norm not in IMAGE_NORMS:
            raise MetalloError(f"preprocess.image must be one of {', '.join(IMAGE_NORMS)}; got {self.image_norm!r}.")

    def _check_fields(self) -> None:
        """Refuse values no train stage writes (a hand-edited or hostile preprocessor_config.json), naming the field."""

        def refuse(name: str, wanted: str) -> None:
            raise MetalloError(f"field {name} must be {wanted}; got {getattr(self, name)!r:.80}.")

        def whole(name: str, low: int, high: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                refuse(name, f"a whole number {low}..{high}")

        whole("image_size", 1, MAX_IMAGE_SIZE)  # the model config's upper limit; load_model checks they agree
        whole("resize", 1, MAX_GEOMETRY_SIDE)
        whole("crop", 1, self.resize)
        whole("bit_depth", 8, 16)
        if self.fit not in FIT_CHOICES:
            refuse("fit", f"one of {', '.join(FIT_CHOICES)}")
        if not isinstance(self.raw_copies, bool):
            refuse("raw_copies", "true or false")
        for name, length in (("image_mean", 3), ("image_std", 3), ("spectra_mean", None), ("spectra_std", None)):
            values = getattr(self, name)
            length = length or len(self.spectra_mean if isinstance(self.spectra_mean, (list, tuple)) else [])
            if (
                not isinstance(values, (list, tuple))
                or len(values) != length
                or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values)
                or (name.endswith("_std") and min(values, default=1.0) <= 0)
            ):
                positive = " positive" if name.endswith("_std") else ""
                refuse(name, f"a list of {length}{positive} finite numbers (as long as spectra_mean)")

    @classmethod
    def from_stats(
        cls,
        stats: dict,
        *,
        image_size: int,
        resize: int,
        crop: int,
        fit: str = FIT_BEFORE_OPTION,
        bit_depth: int = 16,
        spectra_norm: str = "snv",
        image_norm: str = "dataset",
        std_floor: float = 0.01,
        raw_copies: bool = False,
    ) -> MetalloProcessor:
        """The processor for the train split's ``stats`` (``data/split/stats.json``) and convert's geometry."""
        if spectra_norm == "none":
            length = len(stats["spectra"]["mean"])
            mean, std = [0.0] * length, [1.0] * length
        else:
            key = "spectra_snv" if spectra_norm == "snv" else "spectra"
            if key not in stats:
                raise MetalloError(
                    f"the split statistics have no {key!r} entry (written by an older split stage); "
                    "re-run `dvc repro split`."
                )
            moments = stats[key]
            mean, std = moments["mean"], floored_std(moments["std"], std_floor)
        if image_norm == "none":
            image_mean, image_std = [0.0] * 3, [1.0] * 3
        else:
            image_mean, image_std = stats["image"]["mean"], stats["image"]["std"]
        if not all(math.isfinite(float(v)) for v in (*mean, *std, *image_mean, *image_std)):
            raise MetalloError(
                "the training split's statistics (data/split/stats.json) are not finite (inf or NaN): the training "
                "data holds inf/NaN values, or the file is damaged. Check the spectra and images, then re-run "
                "`dvc repro split`; nothing was trained and no model was written to models/model."
            )
        return cls(
            image_mean,
            image_std,
            mean,
            std,
            image_size=int(image_size),
            resize=int(resize),
            crop=int(crop),
            fit=str(fit),
            bit_depth=int(bit_depth),
            spectra_norm=spectra_norm,
            image_norm=image_norm,
            raw_copies=bool(raw_copies),
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields (what ``preprocessor_config.json`` holds) and ``image_processor_type``."""
        data = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        return {**data, "image_processor_type": type(self).__name__}

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, image_processor_dict: dict[str, Any], **kwargs):
        """The processor for a ``preprocessor_config.json`` dict (with or without ``image_processor_type``).

        ``kwargs`` naming a field override the file's value (as for other ``transformers`` processors).
        """
        return_unused = kwargs.pop("return_unused_kwargs", False)
        names = {f.name for f in cls.__dataclass_fields__.values() if f.init}
        data = {k: v for k, v in image_processor_dict.items() if k in names}
        data.update({k: kwargs.pop(k) for k in list(kwargs) if k in names})
        processor = cls(**data)
        return (processor, kwargs) if return_unused else processor

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> MetalloProcessor:
        """Load from a model folder (or a Hub repository) holding ``preprocessor_config.json``."""
        path = Path(pretrained_model_name_or_path)
        problem = f"{path / PROCESSOR_FILE} not found: {path} is not a model directory written by Metallo's train stage"
        if path.is_dir() and not (path / PROCESSOR_FILE).is_file():
            raise MetalloError(f"{problem}.")
        try:
            return super().from_pretrained(pretrained_model_name_or_path, trust_remote_code=False, **kwargs)
        except (OSError, ValueError) as err:  # neither a folder nor a reachable Hub repository
            raise MetalloError(f"{problem} (nor a Hub repository: {' '.join(str(err).split())[:200]}).") from None

    def preprocess(self, images, spectra=None, return_tensors: str | None = "pt", device=None) -> BatchFeature:
        """Hugging Face style call: micrographs (PIL images or uint8 H×W×3 arrays, any size) and their raw
        spectra (N×S×L) → the model's inputs as a :class:`~transformers.BatchFeature`.

        Each image goes through the convert geometry the model was trained with (``fit``, ``resize``,
        ``crop``), then the batch through the same normalisation as in training. 16-bit images must be
        scaled to 8 bits first (:func:`metallo.data.readers.read_image_rgb` does it as convert did).
        """
        from PIL import Image

        if return_tensors not in ("pt", None):
            raise MetalloError(
                f"MetalloProcessor returns PyTorch tensors only (return_tensors='pt'); got {return_tensors!r}."
            )
        single = isinstance(images, Image.Image) or (isinstance(images, np.ndarray) and images.ndim == 3)
        images = [images] if single else list(images)
        geometry = Geometry(resize=self.resize, crop=self.crop, fit=self.fit)
        pixels = np.stack(
            [
                geometry.apply(
                    image.convert("RGB")
                    if isinstance(image, Image.Image)
                    else Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
                )
                for image in images
            ]
        )
        batch = {"pixel_values": torch.from_numpy(pixels).to(device or "cpu")}
        if spectra is not None:
            values = np.asarray(spectra, dtype=np.float32)
            batch["spectra"] = torch.from_numpy(values[None] if values.ndim == 2 else values).to(device or "cpu")
        return BatchFeature(self(batch), tensor_type=None)

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        key = str(device)
        if key not in self._buffers:
            as_tensor = lambda v: torch.tensor(v, dtype=torch.float32, device=device)  # noqa: E731
            self._buffers[key] = (
                as_tensor(self.image_mean).view(1, 3, 1, 1),
                as_tensor(self.image_std).view(1, 3, 1, 1),
                as_tensor(self.spectra_mean),
                as_tensor(self.spectra_std),
            )
        return self._buffers[key]

    def stored_intensities(self, pixels: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 B×H×W×3 (any device) → float B×3×H×W intensities in [0, 1] at the stored resolution.

        ``gain`` (B,) or (B, 3) scales each image's intensities (per channel) first: illumination
        and colour-balance augmentation.
        """
        if pixels.dim() != 4 or pixels.shape[-1] != 3:
            raise ValueError(f"pixels must be uint8 with shape (batch, height, width, 3); got {tuple(pixels.shape)}")
        x = pixels.permute(0, 3, 1, 2).float().div_(255.0)
        if gain is not None:
            x = (x * gain.view(gain.shape[0], -1, 1, 1)).clamp_(0.0, 1.0)
        return x

    def to_model_size(self, x: torch.Tensor) -> torch.Tensor:
        """float B×3×H×W → B×3×s×s at the model's ``image_size`` (antialiased bilinear)."""
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False
            )
        return x

    def intensities(self, pixels: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 B×H×W×3 (any device) → float B×3×s×s intensities in [0, 1] at the model's size
        (see :meth:`stored_intensities`)."""
        return self.to_model_size(self.stored_intensities(pixels, gain))

    def images(self, pixels: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 B×H×W×3 (any device) → normalised float B×3×s×s, channels-last (see :meth:`intensities`)."""
        return self.normalise_images(self.intensities(pixels, gain))

    def normalise_images(self, x: torch.Tensor) -> torch.Tensor:
        mean, std, _, _ = self._tensors(x.device)
        if self.image_norm == "per_image":
            level = torch.quantile(x.flatten(1), 0.99, dim=1).clamp_min(1e-3).view(-1, 1, 1, 1)
            x = x / level
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)

    def raw_spectra(
        self, spectra: torch.Tensor, gain: torch.Tensor | None = None, offset: torch.Tensor | None = None
    ) -> torch.Tensor:
        """float B×S×L spectra as measured, with the augmentation's gain and dark offset applied."""
        spectra = spectra.float()
        if offset is not None:
            spectra = spectra + offset.view(-1, 1, 1) * spectra.std(dim=-1, keepdim=True)
        if gain is not None:
            spectra = spectra * gain.view(-1, 1, 1)
        return spectra

    def spectra(
        self, spectra: torch.Tensor, gain: torch.Tensor | None = None, offset: torch.Tensor | None = None
    ) -> torch.Tensor:
        """float B×S×L raw spectra → normalised float32 (see :data:`SPECTRA_NORMS`)."""
        return self.normalise_spectra(self.raw_spectra(spectra, gain, offset))

    def normalise_spectra(self, spectra: torch.Tensor) -> torch.Tensor:
        _, _, mean, std = self._tensors(spectra.device)
        if spectra.shape[-1] != mean.shape[0]:
            raise ValueError(
                f"spectra have length {spectra.shape[-1]}, but the processor was fitted on length {mean.shape[0]}"
            )
        if self.spectra_norm == "snv":
            spectra = snv(spectra)
        return (spectra - mean) / std

    def __call__(self, batch, *args, **kwargs) -> dict:
        """Apply to a batch dict holding ``pixel_values`` (uint8) and ``spectra`` (raw).

        Anything else (images, with ``spectra=`` raw spectra) goes to :meth:`preprocess`.

        Optional ``image_gain`` / ``spectra_gain`` / ``spectra_offset`` entries (from
        :func:`metallo.augmentation.augment_batch`) are consumed. With ``raw_copies`` the batch also gets
        ``raw_pixel_values`` (intensities in [0, 1] at the stored resolution, not resized) and
        ``raw_spectra`` (as measured), after the
        same augmentation, for models that compute features of their own from them.
        """
        if not isinstance(batch, dict):
            return self.preprocess(batch, *args, **kwargs)
        out = dict(batch)
        image_gain, spectra_gain = out.pop("image_gain", None), out.pop("spectra_gain", None)
        spectra_offset = out.pop("spectra_offset", None)
        if out.get("pixel_values") is not None:
            stored = self.stored_intensities(out["pixel_values"], image_gain)
            out["pixel_values"] = self.normalise_images(self.to_model_size(stored))
            if self.raw_copies:
                out["raw_pixel_values"] = stored
        if out.get("spectra") is not None:
            raw = self.raw_spectra(out["spectra"], spectra_gain, spectra_offset)
            out["spectra"] = self.normalise_spectra(raw)
            if self.raw_copies:
                out["raw_spectra"] = raw
        return out
