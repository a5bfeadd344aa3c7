"""What one benchmark run measures: :class:`BenchConfig`, its defaults and its checks.

The sizes that describe the pipeline are not repeated here: the original 336/300 resize/crop
ratio is the convert :class:`~metallo.data.geometry.Geometry`'s default, the number of spectra,
their grid, the spectrum length and the model's input side are the model config's defaults, and
the model and backbone choices come from the model registry.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields

from metallo.data.geometry import Geometry
from metallo.errors import MetalloError
from metallo.models import get_config_class, list_models

#: Section key -> the label the report prints.
SECTIONS = {
    "old_png_pipeline": "(a) old pipeline: PNG + PIL/torchvision per sample",
    "metallo_input_pipeline": "(b) Metallo input: uint8 memmap -> device -> processor",
    "train_step_on_device": "(c) training step, batch already on device (ceiling)",
    "train_stage": "(d) train stage (run_train + params.yaml)",
}
#: The pipeline's own geometry (the original system's: resize the shorter side to 336, crop 300).
REFERENCE = Geometry()
#: Models the bench can train: those trained by gradient descent (the classical model is fitted in closed form).
MODELS = tuple(list_models(closed_form=False))

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")
DEFAULT_MODEL = "metallonet"
#: ``--convert-scaling`` measures convert at the pipeline's sizes unless told otherwise.
SCALING_SIZES = {
    "samples": 150,
    "image_size": REFERENCE.crop,
    "spectra_length": get_config_class(DEFAULT_MODEL)().spectrum_length,
}


def default_resize(crop: int) -> int:
    """The reference resize-to-crop ratio (336/300) at another crop size."""
    return max(crop, int(round(crop * REFERENCE.resize / REFERENCE.crop)))


@dataclass
class BenchConfig:
    """Sizes, model and loop of one ``metallo bench`` run (``--convert-scaling`` uses the sizes and workers).

    ``resize`` defaults to :func:`default_resize` of ``image_size`` (the stored crop side S),
    ``model_image_size`` to the smaller of S and the model's own input side, ``backbone`` to the
    model's own. ``threads`` sets ``torch.set_num_threads`` for the run (None: torch's default);
    ``convert_workers`` 0 = every core for synthesize/ingest/convert; ``work_dir`` None = a
    temporary folder, removed afterwards.
    """

    samples: int = 64
    image_size: int = 96
    resize: int | None = None
    model_image_size: int | None = None
    spectra_length: int = 400
    batch_size: int = 16
    model: str = DEFAULT_MODEL
    backbone: str | None = None
    steps: int = 5
    warmup_steps: int = 2
    passes: int = 3
    workers: int = 0
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    threads: int | None = None
    seed: int = 0
    convert_workers: int = 0
    scaling_factor: int = 4
    work_dir: str | os.PathLike | None = None
    sections: tuple[str, ...] = tuple(SECTIONS)
    params: str | os.PathLike = "params.yaml"
    profile: str | None = None
    n_spectra: int = field(init=False)
    grid: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise MetalloError(f"bench: unknown model {self.model!r}; choose from {', '.join(MODELS)}.")
        model_defaults = get_config_class(self.model)()
        if self.resize is None:
            self.resize = default_resize(self.image_size)
        if self.model_image_size is None:
            self.model_image_size = min(model_defaults.image_size, self.image_size)
        if self.backbone is None:  # "-": a model without a ResNet backbone (MetalloNet)
            self.backbone = getattr(model_defaults, "backbone", "-")
        self.n_spectra = int(model_defaults.n_spectra)
        self.grid = tuple(int(v) for v in model_defaults.grid)

    @classmethod
    def default(cls, name: str):
        """The default of field ``name``."""
        return next(f.default for f in fields(cls) if f.name == name and f.default is not MISSING)

    def check(self) -> None:
        """Refuse sizes the benchmark cannot run with, naming the option."""
        if self.threads is not None and self.threads < 1:
            raise MetalloError(f"--threads must be at least 1; got {self.threads}.")
        for name, value, low in (
            ("--samples", self.samples, 1),
            ("--image-size", self.image_size, 8),
            ("--batch-size", self.batch_size, 1),
            ("--steps", self.steps, 1),
            ("--warmup-steps", self.warmup_steps, 0),
            ("--passes", self.passes, 1),
            ("--workers", self.workers, 0),
            ("--spectra-length", self.spectra_length, 8),
            ("--model-image-size", self.model_image_size, 32),
        ):
            if value < low:
                raise MetalloError(f"{name} must be at least {low}; got {value}.")
        self.check_crop()
        if self.samples < self.batch_size:
            raise MetalloError(f"--samples ({self.samples}) must be at least --batch-size ({self.batch_size}).")
        batches = self.samples // self.batch_size
        if "old_png_pipeline" in self.sections and batches < 2 * self.workers:
            raise MetalloError(
                f"--samples {self.samples} at --batch-size {self.batch_size} gives {batches} batches "
                f"per pass, fewer than 2 per worker (--workers {self.workers}): the old pipeline's "
                f"workers would idle and (a) would be under-counted; use --samples >= "
                f"{2 * self.workers * self.batch_size}."
            )
        unknown = [s for s in self.sections if s not in SECTIONS]
        if unknown:
            raise MetalloError(f"unknown bench section(s) {unknown}; choose from {list(SECTIONS)}.")

    def check_scaling(self) -> None:
        """Refuse sizes ``--convert-scaling`` cannot run with."""
        if self.samples < 1 or self.scaling_factor < 2:
            raise MetalloError(
                f"--samples must be >= 1 and --scaling-factor >= 2; got {self.samples} and {self.scaling_factor}."
            )
        self.check_crop()

    def check_crop(self) -> None:
        """The crop (``image_size``) must fit in the resized image."""
        if self.resize < self.image_size:
            raise MetalloError(f"--resize ({self.resize}) must be at least --image-size ({self.image_size}), the crop.")

    @property
    def spectra_shape(self) -> tuple[int, int]:
        return (self.n_spectra, self.spectra_length)
