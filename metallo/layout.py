"""Where the pipeline's files live, and the shape of one sample (the ``data:`` params section).

The paths mirror ``dvc.yaml``; every stage reads and writes through :data:`PATHS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metallo.errors import MetalloError
from metallo.io import read_json
from metallo.params import section

#: The split names (the ``split`` column of the split table), in the order the tables and metrics list them.
SPLITS = ("train", "val", "test")
TRAIN, VAL, TEST = SPLITS

#: File names inside a stage folder (``Paths`` joins them; convert writes them into any folder it is given).
SAMPLES_FILE = "samples.parquet"
IMAGES_FILE = "images.npy"
SPECTRA_FILE = "spectra.npy"


@dataclass(frozen=True)
class Paths:
    """Where each stage writes (relative to the project root), mirrored in dvc.yaml."""

    synthetic: Path = Path("data/synthetic")
    interim: Path = Path("data/interim")
    processed: Path = Path("data/processed")
    split: Path = Path("data/split")
    model: Path = Path("models/model")
    checkpoints: Path = Path("checkpoints")
    metrics: Path = Path("metrics")

    @property
    def accepted(self) -> Path:
        """ingest's accepted rows (the table convert reads)."""
        return self.interim / SAMPLES_FILE

    @property
    def rejected(self) -> Path:
        """ingest's rejected rows, with the reasons."""
        return self.interim / "rejected.csv"

    @property
    def samples(self) -> Path:
        """convert's sample table (one row per row of the arrays)."""
        return self.processed / SAMPLES_FILE

    @property
    def images(self) -> Path:
        return self.processed / IMAGES_FILE

    @property
    def spectra(self) -> Path:
        return self.processed / SPECTRA_FILE

    @property
    def split_table(self) -> Path:
        return self.split / "split.parquet"

    @property
    def stats(self) -> Path:
        return self.split / "stats.json"

    @property
    def ingest_metrics(self) -> Path:
        return self.metrics / "ingest.json"

    @property
    def split_metrics(self) -> Path:
        return self.metrics / "split.json"

    @property
    def train_metrics(self) -> Path:
        return self.metrics / "train.json"

    @property
    def eval_metrics(self) -> Path:
        return self.metrics / "eval.json"

    @property
    def predictions(self) -> Path:
        """evaluate's per-sample test predictions."""
        return self.metrics / "predictions.csv"

    @property
    def run_file(self) -> Path:
        """The MLflow run the trained model belongs to (untracked: a run id differs on every run)."""
        return self.model.parent / "run.json"


PATHS = Paths()


#: Keys of the ``data:`` section (``wavelengths`` is optional).
DATA_KEYS = ("n_spectra", "spectrum_length", "grid", "wavelengths")


def wavelength_range(params: dict) -> tuple[float, float] | None:
    """``data.wavelengths``: the first and last wavelength (nm) of each spectrum, or ``None`` when not given."""
    values = (params.get("data") or {}).get("wavelengths")
    if values is None or (isinstance(values, (list, tuple)) and not values):
        return None
    try:
        first, last = (float(v) for v in values)
    except (TypeError, ValueError):
        raise MetalloError(
            f"data.wavelengths must be [first, last] in nm (e.g. [400, 1000]) or []; got {values!r}."
        ) from None
    if not first < last:
        raise MetalloError(f"data.wavelengths must rise: [first, last] with first < last; got {values!r}.")
    return first, last


def python_int(value: Any) -> Any:
    """A NumPy integer (from a caller's arithmetic) as a Python int; anything else as given."""
    return int(value) if isinstance(value, np.integer) else value


#: Largest side of the square image a model sees (``model.image_size``): a 2048 x 2048 float32 RGB
#: input is 50 MB per sample. A model folder claiming 60000 made predict allocate 1.38 TB.
MAX_IMAGE_SIZE = 2048
#: Largest ``resize``/``crop`` side a model's processor may ask new images to be resized to.
MAX_GEOMETRY_SIDE = 4096


def check_positive_int(field: str, value: Any) -> None:
    """Raises a ValueError unless ``value`` is a positive Python int (not a bool; configs are saved as JSON)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{field} must be a positive integer; got {value!r}")


def check_grid(grid: Any, n_spectra: int) -> tuple[int, int]:
    """``grid`` as ``(rows, cols)``: two positive integers with ``rows * cols == n_spectra``.

    Raises:
        ValueError: naming what is wrong (callers add which param or field it was).
    """
    if isinstance(grid, str):
        raise ValueError(f"grid must be [rows, cols]; got {grid!r}")
    try:
        values = list(grid)
    except TypeError:
        raise ValueError(f"grid must be [rows, cols]; got {grid!r}") from None
    if len(values) != 2:
        raise ValueError(f"grid must be [rows, cols]; got {grid!r}")
    rows, cols = (python_int(v) for v in values)
    for value in (rows, cols):
        check_positive_int("grid entries", value)
    if rows * cols != n_spectra:
        raise ValueError(
            f"grid {rows}x{cols} holds {rows * cols} measurement points but n_spectra is {n_spectra}; "
            "rows * cols must equal n_spectra"
        )
    return rows, cols


@dataclass(frozen=True)
class DataShape:
    """``data:`` section: the shape of one sample's spectra and their measurement grid."""

    n_spectra: int
    spectrum_length: int
    grid: tuple[int, int]

    @classmethod
    def from_params(cls, params: dict) -> DataShape:
        data = section(params, "data", DATA_KEYS)
        n_spectra, spectrum_length = int(data["n_spectra"]), int(data["spectrum_length"])
        try:
            grid = check_grid(data["grid"], n_spectra)
        except ValueError as err:
            raise MetalloError(f"data.{err} (see data.n_spectra).") from None
        return cls(n_spectra, spectrum_length, grid)

    @property
    def spectra(self) -> tuple[int, int]:
        return (self.n_spectra, self.spectrum_length)


#: The demo's sample shape (params.yaml's ``data:``): the defaults of the model configs and of ``synthesize``.
DEFAULT_SHAPE = DataShape(n_spectra=24, spectrum_length=1600, grid=(6, 4))


def load_stats(paths: Paths = PATHS) -> dict[str, Any]:
    if not paths.stats.is_file():
        raise MetalloError(f"{paths.stats} not found; run `dvc repro split` first.")
    return read_json(paths.stats)
