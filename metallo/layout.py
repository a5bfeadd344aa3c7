"""Where the pipeline's files live, and the shape of one sample (the ``data:`` params section).

The paths mirror ``dvc.yaml``; every stage reads and writes through :data:`PATHS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metallo.errors import MetalloError
from metallo.io import read_json
from metallo.params import section


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
    def stats(self) -> Path:
        return self.split / "stats.json"


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


@dataclass(frozen=True)
class DataShape:
    """``data:`` section: the shape of one sample's spectra and their measurement grid."""

    n_spectra: int
    spectrum_length: int
    grid: tuple[int, int]

    @classmethod
    def from_params(cls, params: dict) -> DataShape:
        data = section(params, "data", DATA_KEYS)
        grid = tuple(int(v) for v in data["grid"])
        shape = cls(int(data["n_spectra"]), int(data["spectrum_length"]), grid)
        if len(grid) != 2 or grid[0] * grid[1] != shape.n_spectra:
            raise MetalloError(
                f"data.grid {list(grid)} must be [rows, cols] with rows*cols == data.n_spectra ({shape.n_spectra})."
            )
        return shape

    @property
    def spectra(self) -> tuple[int, int]:
        return (self.n_spectra, self.spectrum_length)


def load_stats(paths: Paths = PATHS) -> dict[str, Any]:
    if not paths.stats.is_file():
        raise MetalloError(f"{paths.stats} not found; run `dvc repro split` first.")
    return read_json(paths.stats)
