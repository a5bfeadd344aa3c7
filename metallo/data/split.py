"""Split: assign each sample to train / val / test by slice, and compute train-only statistics.

By default slice ``1`` is shuffled (seeded) into 85 % train and 15 % val, and slice ``2`` is
the test set. Validation decides early stopping and which model is kept, so it should look like the test: a
specimen the model never saw. With several training slices (``split.validation: auto`` or ``specimen``) one
whole training specimen is held out for validation (``split.val_slices``, default the last training slice);
with one, or with ``split.validation: samples``, ``val_fraction`` of every training slice is. Rows whose slice is
in neither list are reported, never silently dropped.
Normalisation statistics come from the train rows only, so no later stage can leak
validation or test information into the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from metallo.errors import MetalloError
from metallo.io import open_npy, write_json, write_parquet
from metallo.layout import PATHS, SPLITS, Paths
from metallo.params import Section
from metallo.spectra import snv


@dataclass(frozen=True)
class SplitParams(Section):
    """The ``split:`` section."""

    NAME = "split"
    train_slices: list
    test_slices: list
    val_fraction: float
    seed: int
    validation: str = "auto"
    val_slices: list | None = None

    def check(self) -> None:
        self._set("val_fraction", float(self.val_fraction))
        self._set("seed", int(self.seed))
        self._set("validation", str(self.validation))
        self._set("val_slices", self.val_slices or [])


#: ``split.validation``: how validation rows are chosen (see the module docstring).
VALIDATIONS = ("auto", "specimen", "samples")


@dataclass
class SplitResult:
    table: pd.DataFrame  # sample_id, split (train | val | test), index
    unassigned: dict[str, int] = field(default_factory=dict)  # slice_id -> rows in neither list
    val_slices: list[str] = field(default_factory=list)  # the held-out training specimens ([]: held-out samples)

    @property
    def validation(self) -> str:
        """What the validation rows are, in words."""
        if self.val_slices:
            return f"held-out specimen{'s' if len(self.val_slices) > 1 else ''} {', '.join(self.val_slices)}"
        return "held-out samples of the training specimens"

    @property
    def counts(self) -> dict[str, int]:
        counts = {name: int((self.table["split"] == name).sum()) for name in SPLITS}
        counts["unassigned"] = int(sum(self.unassigned.values()))
        counts["val_specimens"] = len(self.val_slices)
        return counts


def split_samples(
    samples: pd.DataFrame,
    *,
    train_slices: list,
    test_slices: list,
    val_fraction: float,
    seed: int,
    validation: str = "auto",
    val_slices: list | None = None,
) -> SplitResult:
    """Split the rows of ``samples`` (needs ``sample_id``, ``slice_id``; row order = array order)."""
    train_slices = [str(s) for s in train_slices]
    test_slices = [str(s) for s in test_slices]
    if overlap := sorted(set(train_slices) & set(test_slices)):
        raise MetalloError(
            f"slice(s) {overlap} are in both split.train_slices and split.test_slices; a slice goes to one side only."
        )
    if not 0.0 <= float(val_fraction) < 1.0:
        raise MetalloError(f"split.val_fraction must be in [0, 1); got {val_fraction}.")
    held_out = held_out_specimens(train_slices, validation, val_slices)

    slices = samples["slice_id"].astype(str).to_numpy()
    split = np.full(len(samples), "", dtype=object)
    train_rows = np.flatnonzero(np.isin(slices, train_slices))
    split[train_rows] = "train"
    if held_out:
        split[np.isin(slices, held_out)] = "val"
    else:
        split[validation_rows(slices, train_slices, float(val_fraction), seed)] = "val"
    split[np.isin(slices, test_slices)] = "test"

    if not (split == "train").any():
        raise MetalloError(
            f"no training rows: no sample has a slice_id in split.train_slices {train_slices} "
            f"(slices present: {sorted(set(slices))})."
        )
    assigned = split != ""
    unassigned = pd.Series(slices[~assigned]).value_counts().sort_index()
    table = pd.DataFrame(
        {
            "sample_id": samples["sample_id"].to_numpy()[assigned],
            "split": split[assigned].astype(str),
            "index": np.flatnonzero(assigned).astype(np.int64),
        }
    )
    return SplitResult(table, {str(k): int(v) for k, v in unassigned.items()}, held_out)


def held_out_specimens(train_slices: list[str], validation: str, val_slices: list | None) -> list[str]:
    """The training slices validation holds out whole (``[]``: validation takes samples of every slice)."""
    if validation not in VALIDATIONS:
        raise MetalloError(f"split.validation must be one of {', '.join(VALIDATIONS)}; got {validation!r}.")
    chosen = [str(s) for s in (val_slices or [])]
    if unknown := [s for s in chosen if s not in train_slices]:
        raise MetalloError(
            f"split.val_slices {unknown} are not in split.train_slices {train_slices}: validation specimens are "
            "training specimens held out whole."
        )
    if validation == "samples":
        return []
    if len(train_slices) < 2:
        if validation == "specimen":
            raise MetalloError(
                f"split.validation: specimen needs two or more training slices, one to hold out; split.train_slices "
                f"is {train_slices}. Add a slice, or set split.validation to auto or samples."
            )
        return []
    chosen = chosen or train_slices[-1:]
    if len(chosen) >= len(train_slices):
        raise MetalloError(f"split.val_slices {chosen} leave no training slice; keep at least one for training.")
    return chosen


def validation_rows(slices: np.ndarray, train_slices: list[str], val_fraction: float, seed: int) -> np.ndarray:
    """Rows held out for validation: ``val_fraction`` of each training slice (at least one row of a
    slice with two or more), drawn with ``seed``, so every training specimen is represented."""
    rng = np.random.default_rng(seed)
    chosen = []
    for name in sorted(set(train_slices)):
        rows = rng.permutation(np.flatnonzero(slices == name))
        n_val = int(round(val_fraction * len(rows)))
        if val_fraction > 0 and len(rows) >= 2:
            n_val = max(n_val, 1)
        chosen.append(rows[:n_val])
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def _mean_std(total: np.ndarray, total_sq: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 0.0)
    return mean, np.sqrt(var)


def train_statistics(
    images: np.ndarray, spectra: np.ndarray, labels: np.ndarray, train_index: np.ndarray, chunk: int = 64
) -> dict:
    """Per-channel image, per-wavelength spectra and label mean/std over the train rows only.

    ``images`` (uint8 N×H×W×3) and ``spectra`` (N×S×L) may be memory maps; they are read in
    chunks with float64 accumulators, so memory stays bounded.
    """
    train_index = np.sort(np.asarray(train_index))
    n_pix = 0
    img_sum = np.zeros(3)
    img_sq = np.zeros(3)
    n_spec = 0
    spec_sum = np.zeros(spectra.shape[-1])
    spec_sq = np.zeros(spectra.shape[-1])
    snv_sum = np.zeros(spectra.shape[-1])
    snv_sq = np.zeros(spectra.shape[-1])
    for start in range(0, len(train_index), chunk):
        rows = train_index[start : start + chunk]
        pixels = images[rows].reshape(-1, 3).astype(np.float64) / 255.0
        img_sum += pixels.sum(0)
        img_sq += (pixels**2).sum(0)
        n_pix += len(pixels)
        values = spectra[rows].reshape(-1, spectra.shape[-1]).astype(np.float64)
        spec_sum += values.sum(0)
        spec_sq += (values**2).sum(0)
        snv_values = snv(values)
        snv_sum += snv_values.sum(0)
        snv_sq += (snv_values**2).sum(0)
        n_spec += len(values)
    img_mean, img_std = _mean_std(img_sum, img_sq, n_pix)
    spec_mean, spec_std = _mean_std(spec_sum, spec_sq, n_spec)
    snv_mean, snv_std = _mean_std(snv_sum, snv_sq, n_spec)
    glob_mean, glob_std = _mean_std(spec_sum.sum(keepdims=True), spec_sq.sum(keepdims=True), n_spec * spectra.shape[-1])
    y = np.asarray(labels, dtype=np.float64)[train_index]
    return {
        "n_train": int(len(train_index)),
        "image": {"mean": img_mean.tolist(), "std": img_std.tolist()},
        "spectra": {
            "mean": spec_mean.tolist(),
            "std": spec_std.tolist(),
            "global_mean": float(glob_mean[0]),
            "global_std": float(glob_std[0]),
        },
        "spectra_snv": {"mean": snv_mean.tolist(), "std": snv_std.tolist()},
        "label": {"mean": float(y.mean()), "std": float(y.std()) if len(y) > 1 else 1.0},
    }


def check_processed(paths: Paths) -> None:
    """Refuse to split when convert's outputs are missing or disagree (e.g. convert was killed)."""
    missing = [path.name for path in (paths.samples, paths.images, paths.spectra) if not path.is_file()]
    if missing:
        raise MetalloError(
            f"{paths.processed} lacks {', '.join(missing)}: the convert stage has not finished "
            "(or was interrupted). Run `dvc repro convert` (or `metallo convert`) first."
        )
    rows = len(pd.read_parquet(paths.samples, columns=["sample_id"]))
    for path in (paths.images, paths.spectra):
        n = open_npy(path, "Run `dvc repro convert` (or `metallo convert`) again.").shape[0]
        if n != rows:
            raise MetalloError(
                f"{path} has {n} rows but samples.parquet lists {rows}: the "
                "convert outputs are from different runs. Run `dvc repro convert` again."
            )


def run_split(params: dict, paths: Paths = PATHS) -> dict[str, int]:
    """Assign train/val/test and compute train-only statistics. Reads ``split``."""
    cfg = SplitParams.from_params(params)
    check_processed(paths)
    samples = pd.read_parquet(paths.samples)
    result = split_samples(
        samples,
        train_slices=cfg.train_slices,
        test_slices=cfg.test_slices,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        validation=cfg.validation,
        val_slices=cfg.val_slices,
    )
    counts = result.counts
    if result.unassigned:
        detail = ", ".join(f"slice {k!r}: {v} rows" for k, v in result.unassigned.items())
        print(
            f"split: WARNING {counts['unassigned']} samples are in neither split.train_slices nor "
            f"split.test_slices and are not used ({detail}); add their slice to one list to use them."
        )
    images = open_npy(paths.images)
    spectra = open_npy(paths.spectra)
    train_index = result.table.loc[result.table["split"] == "train", "index"].to_numpy()
    stats = train_statistics(images, spectra, samples["dos"].to_numpy(), train_index)
    write_parquet(paths.split_table, result.table)
    write_json(paths.stats, stats)
    write_json(paths.split_metrics, counts)
    print(f"split: {counts}; validation: {result.validation}")
    if not result.val_slices and len(cfg.train_slices) < 2:
        print(
            "split: one training specimen, so validation (early stopping, model choice, intervals) uses held-out "
            "samples of it and may favour what does not carry over to a new specimen; list two or more training "
            "slices to validate on a held-out specimen."
        )
    return counts
