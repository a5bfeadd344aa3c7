"""The ``synthesize`` stage: the demo raw folder, written from the generative model.

The samples come from :mod:`metallo.data.generative` (latents -> micrograph, spectra, label);
this module lays them out as a raw folder that ingest accepts::

    manifest.csv   sample_id,slice_id,image,spectra,dos   (the contract consumed by ingest)
    images/sNNNN.png    8-bit RGB, image_size x image_size
    spectra/sNNNN.npy   float32 (n_spectra, spectrum_length), row k = grid cell (k // cols, k % cols)
    latents.csv    ground-truth latents per sample (for analysis only; not part of the contract)

Everything is deterministic for a given set of arguments, whatever ``workers`` is: sample i uses
the i-th child of ``np.random.SeedSequence(seed).spawn(n_total)``. Every file is written
atomically; the manifest last.

    python -m metallo.data.synthesize OUT_DIR [--seed 0] [--slice1 480] [--slice2 120] ...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from metallo.data.generative import SLICE_PROFILES, SampleLatents, generate_sample
from metallo.data.ingest import MANIFEST, MANIFEST_COLUMNS
from metallo.errors import MetalloError
from metallo.io import remove_path, write_file, write_rows
from metallo.layout import DEFAULT_SHAPE, PATHS, DataShape, check_grid, check_positive_int, python_int
from metallo.parallel import map_ordered, resolve_workers
from metallo.params import Section

#: Samples per slice of the demo data set.
DEFAULT_COUNTS = {"1": 480, "2": 120}
#: Ground-truth latents beside the manifest (not part of the raw-folder contract).
LATENTS = "latents.csv"


@dataclass(frozen=True)
class SynthesizeParams(Section):
    """The ``synthesize:`` section (every key optional)."""

    NAME = "synthesize"
    seed: int = 0
    samples_per_slice: Any = field(default_factory=lambda: dict(DEFAULT_COUNTS))
    image_size: int = 300
    workers: int | None = None  # 0 or absent: all cores

    def check(self) -> None:
        self._set("seed", int(self.seed))


# ----------------------------------------------------------------------------------------------
# Raw-folder writing (shared with metallo.data.variants)
# ----------------------------------------------------------------------------------------------


def reset_raw_folder(out: Path, files: Sequence[str] = (MANIFEST, LATENTS)) -> None:
    """Create ``out``, remove ``files`` from it and empty ``images/`` and ``spectra/``; nothing else is touched."""
    out.mkdir(parents=True, exist_ok=True)
    for name in files:
        (out / name).unlink(missing_ok=True)
    for name in ("images", "spectra"):
        remove_path(out / name)
        (out / name).mkdir()


def write_table(path: Path, columns: Sequence[str], rows: Sequence[dict], fmt: Callable[[str, object], str]) -> None:
    """Write ``rows`` (dicts) as a CSV file, each cell formatted by ``fmt(column, value)``."""
    write_rows(path, columns, ([fmt(c, row[c]) for c in columns] for row in rows))


def format_latent(column: str, value) -> str:
    """Floats as their shortest exact repr, everything else as ``str``."""
    return repr(float(value)) if isinstance(value, (float, np.floating)) else str(value)


def _format_manifest(column: str, value) -> str:
    return f"{value:.6f}" if column == "dos" else str(value)


# ----------------------------------------------------------------------------------------------
# One sample
# ----------------------------------------------------------------------------------------------


def _latent_row(sample_id: str, slice_id: str, latents: SampleLatents, info: dict) -> dict:
    """The ground truth of one sample: label, latents and their standardised values, render facts."""
    image = asdict(latents.image)
    return {
        "sample_id": sample_id,
        "slice_id": slice_id,
        "dos": latents.dos,
        "grain_size": latents.image.grain_size,
        "log_grain_size": math.log(latents.image.grain_size),
        "phase_fraction": latents.image.phase_fraction,
        "composition": latents.composition,
        "z_grain": latents.z_grain,
        "z_composition": latents.z_composition,
        "z_phase": latents.z_phase,
        "label_noise": latents.label_noise,
        **{k: v for k, v in image.items() if k not in ("grain_size", "phase_fraction")},
        **info,
    }


def _write_sample(task) -> dict:
    """Generate one sample, write its image and spectra; its manifest row and latents row."""
    seq, slice_id, sample_id, out_dir, image_size, spectrum_length, grid = task
    latents, img, spectra, info = generate_sample(seq, slice_id, image_size, spectrum_length, grid)
    out = Path(out_dir)
    image_rel = f"images/{sample_id}.png"
    spectra_rel = f"spectra/{sample_id}.npy"
    pil = Image.fromarray(img, mode="RGB")
    write_file(out / image_rel, lambda fh: pil.save(fh, format="PNG", optimize=False, compress_level=6))
    write_file(out / spectra_rel, lambda fh: np.save(fh, spectra, allow_pickle=False))
    row = {"sample_id": sample_id, "slice_id": slice_id, "image": image_rel, "spectra": spectra_rel, "dos": latents.dos}
    return {"manifest": row, "latents": _latent_row(sample_id, slice_id, latents, info)}


# ----------------------------------------------------------------------------------------------
# The data set
# ----------------------------------------------------------------------------------------------


def _validate(samples_per_slice, image_size, n_spectra, spectrum_length, grid) -> tuple[int, int]:
    """Check the arguments of :func:`synthesize`; the grid as ``(rows, cols)``."""
    if not isinstance(samples_per_slice, dict) or not samples_per_slice:
        raise ValueError("samples_per_slice must be a non-empty dict {slice_id: count}")
    for sid, n in samples_per_slice.items():
        if str(sid) not in SLICE_PROFILES:
            raise ValueError(f"unknown slice id {sid!r}; known: {', '.join(SLICE_PROFILES)}")
        check_positive_int(f"samples_per_slice[{sid!r}]", python_int(n))
    for name, value in (("image_size", image_size), ("n_spectra", n_spectra), ("spectrum_length", spectrum_length)):
        check_positive_int(name, python_int(value))
    rows, cols = check_grid(grid, n_spectra)
    if image_size < max(rows, cols):
        raise ValueError(f"image_size={image_size} is smaller than the grid {rows}x{cols}")
    if spectrum_length < 2:
        raise ValueError("spectrum_length must be at least 2")
    return rows, cols


def _summary(out: Path, manifest_rows: list[dict], counts: dict[str, int]) -> dict:
    """Sample counts and label moments, overall and per slice."""
    dos = np.array([r["dos"] for r in manifest_rows])
    per_slice = {}
    for sid in counts:
        d = np.array([r["dos"] for r in manifest_rows if r["slice_id"] == sid])
        per_slice[sid] = {"n": int(d.size), "dos_mean": float(d.mean()), "dos_std": float(d.std())}
    return {
        "out_dir": str(out),
        "n_samples": len(manifest_rows),
        "counts": counts,
        "dos_mean": float(dos.mean()),
        "dos_std": float(dos.std()),
        "per_slice": per_slice,
    }


def _sample_tasks(counts: dict[str, int], seed: int, out: Path, image_size: int, spectrum_length: int, grid) -> list:
    """One :func:`_write_sample` task per sample: sample i (ids ``s0000, ...`` across slices in
    ``counts`` order) gets the i-th child of ``SeedSequence(seed)``."""
    slices = [sid for sid, n in counts.items() for _ in range(n)]
    width = max(4, len(str(len(slices) - 1)))
    seqs = np.random.SeedSequence(seed).spawn(len(slices))
    return [
        (seqs[i], slices[i], f"s{i:0{width}d}", str(out), image_size, spectrum_length, grid) for i in range(len(slices))
    ]


def synthesize(
    out_dir,
    *,
    seed: int = 0,
    samples_per_slice: dict[str, int] | None = None,
    image_size: int = 300,
    n_spectra: int = DEFAULT_SHAPE.n_spectra,
    spectrum_length: int = DEFAULT_SHAPE.spectrum_length,
    grid=DEFAULT_SHAPE.grid,
    workers: int | None = None,
    progress: bool | None = None,
) -> dict:
    """Write a synthetic raw folder (manifest.csv, images/, spectra/, latents.csv) into ``out_dir``.

    ``samples_per_slice`` defaults to ``{"1": 480, "2": 120}``; slices are generated in sorted order of
    their ids, sample ids ``s0000, s0001, ...`` run across slices. ``workers`` None or 0 = every
    usable core; 1 = in-process. Returns a summary dict.
    """
    if samples_per_slice is None:
        samples_per_slice = DEFAULT_COUNTS
    samples_per_slice = {str(k): v for k, v in samples_per_slice.items()}
    rows, cols = _validate(samples_per_slice, image_size, n_spectra, spectrum_length, grid)
    workers = resolve_workers(workers)
    counts = {sid: int(samples_per_slice[sid]) for sid in sorted(samples_per_slice)}
    out = Path(out_dir)
    reset_raw_folder(out)
    tasks = _sample_tasks(counts, seed, out, int(image_size), int(spectrum_length), (rows, cols))
    results = list(
        map_ordered(
            _write_sample,
            tasks,
            workers=workers,
            desc="synthesize",
            chunksize=max(1, min(16, len(tasks) // (workers * 8))),
            show_progress=progress,
        )
    )
    manifest_rows = [r["manifest"] for r in results]
    latent_rows = [r["latents"] for r in results]
    write_table(out / LATENTS, list(latent_rows[0]), latent_rows, format_latent)
    write_table(out / MANIFEST, MANIFEST_COLUMNS, manifest_rows, _format_manifest)
    return {
        **_summary(out, manifest_rows, counts),
        "image_size": int(image_size),
        "n_spectra": int(n_spectra),
        "spectrum_length": int(spectrum_length),
        "grid": [rows, cols],
    }


# ----------------------------------------------------------------------------------------------
# The stage and the command line
# ----------------------------------------------------------------------------------------------


def run_synthesize(params: dict, paths=None) -> dict:
    """DVC stage ``synthesize``: write the demo raw folder to ``paths.synthetic`` (data/synthetic).

    Reads ``synthesize`` (seed, samples_per_slice, image_size, optional workers: 0/absent = all
    cores) and ``data`` (n_spectra, spectrum_length, grid). Returns the summary dict.
    """
    paths = PATHS if paths is None else paths
    cfg = SynthesizeParams.from_params(params)
    shape = DataShape.from_params(params)
    counts = cfg.samples_per_slice
    if not isinstance(counts, dict):
        raise MetalloError(
            f'synthesize.samples_per_slice must be a mapping like {{"1": 480, "2": 120}}; got {counts!r}.'
        )
    try:
        summary = synthesize(
            paths.synthetic,
            seed=cfg.seed,
            samples_per_slice={str(k): v for k, v in counts.items()},
            image_size=cfg.image_size,
            n_spectra=shape.n_spectra,
            spectrum_length=shape.spectrum_length,
            grid=shape.grid,
            workers=cfg.workers or None,
        )
    except ValueError as err:
        raise MetalloError(f"synthesize: {err}. Fix the synthesize:/data: sections of params.yaml.") from None
    print(
        f"synthesize: {summary['n_samples']} samples {summary['counts']} -> {paths.synthetic} "
        f"(dos mean {summary['dos_mean']:.3f}, std {summary['dos_std']:.3f})"
    )
    return summary


def _main(argv=None) -> None:
    """``python -m metallo.data.synthesize OUT_DIR [--seed N] ...``: the raw folder without a project."""
    import argparse
    import json

    p = argparse.ArgumentParser(description="Write the synthetic Metallo demo raw folder.")
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slice1", type=int, default=DEFAULT_COUNTS["1"], help="samples from slice 1")
    p.add_argument("--slice2", type=int, default=DEFAULT_COUNTS["2"], help="samples from slice 2")
    p.add_argument("--image-size", type=int, default=300)
    p.add_argument("--spectrum-length", type=int, default=DEFAULT_SHAPE.spectrum_length)
    p.add_argument("--workers", type=int, default=None)
    a = p.parse_args(argv)
    counts = {k: v for k, v in (("1", a.slice1), ("2", a.slice2)) if v > 0}
    summary = synthesize(
        a.out_dir,
        seed=a.seed,
        samples_per_slice=counts,
        image_size=a.image_size,
        spectrum_length=a.spectrum_length,
        workers=a.workers,
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    _main()
