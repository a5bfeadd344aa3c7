"""Writing a profile's raw folder: files of each sample, ``latents.csv``, ``dataset.json``, ``manifest.csv``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from metallo.data.ingest import MANIFEST, MANIFEST_COLUMNS
from metallo.data.synthesize import LATENTS, format_latent, reset_raw_folder, write_table
from metallo.data.variants.profiles import (
    PROFILES,
    Profile,
    SliceShift,
    profile_seq,
    sample_seeds,
    scaled_counts,
    scaled_frame,
)
from metallo.data.variants.render import render_sample
from metallo.io import write_file, write_json
from metallo.parallel import map_ordered

#: The params a user sets to train on the folder (``data:``, ``split:``) and how it was made.
DATASET_FILE = "dataset.json"
LUMA = np.array([0.299, 0.587, 0.114])


# ----------------------------------------------------------------------------------------------
# One sample's files
# ----------------------------------------------------------------------------------------------


def _encode_image(f: np.ndarray, fmt: str, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Float RGB [0, 1] -> (PIL image, file extension) in the instrument's format."""
    if fmt in ("png_rgb8", "tiff_rgb8", "png_palette"):
        im = Image.fromarray(np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8))
        if fmt == "png_palette":
            im = im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        return im, ("tif" if fmt.startswith("tiff") else "png")
    luma = f @ LUMA
    if fmt == "tiff_gray8":
        return Image.fromarray(np.clip(np.rint(luma * 255.0), 0, 255).astype(np.uint8)), "tif"
    if fmt == "png_gray12":  # 12-bit sensor in a 16-bit container, with a little read noise
        v = luma * 4095.0 + 1.5 * rng.standard_normal(luma.shape)
        return Image.fromarray(np.clip(np.rint(v), 0, 4095).astype(np.uint16)), "png"
    if fmt == "tiff_gray16":
        v = luma * 65535.0 + 20.0 * rng.standard_normal(luma.shape)
        return Image.fromarray(np.clip(np.rint(v), 0, 65535).astype(np.uint16)), "tif"
    raise ValueError(f"unknown image format {fmt!r}")


def _write_image(path: Path, im: Image.Image, ext: str) -> None:
    if ext == "png":
        write_file(path, lambda fh: im.save(fh, format="PNG", compress_level=6))
    else:
        write_file(path, lambda fh: im.save(fh, format="TIFF"))


def _write_spectra(path: Path, spectra: np.ndarray, fmt: str) -> None:
    if fmt == "npy_reflectance":
        arr = spectra.astype(np.float32)
    elif fmt == "npy_float32_counts":
        arr = spectra.astype(np.float32)
    elif fmt == "npy_uint16_counts":
        arr = np.clip(np.rint(spectra), 0, 65535).astype(np.uint16)
    elif fmt == "csv_int_counts":
        arr = np.clip(np.rint(spectra), 0, None).astype(np.int64)
        text = "\n".join(",".join(map(str, row)) for row in arr.tolist()) + "\n"
        write_file(path, lambda fh: fh.write(text.encode("ascii")))
        return
    else:
        raise ValueError(f"unknown spectra format {fmt!r}")
    write_file(path, lambda fh: np.save(fh, arr, allow_pickle=False))


def _work(task) -> dict:
    """Render sample ``index`` and write its image and spectra; its manifest row and latents row."""
    pname, index, seq, sid, sample_id, out_dir, frame = task
    profile = PROFILES[pname]
    s = render_sample(profile, seq, sid, frame)
    fmt = profile.image_formats[index % len(profile.image_formats)]
    im, ext = _encode_image(s["image"], fmt, s["rng"])
    img_dir = f"images/{sid}" if profile.nested_images else "images"
    image_rel = f"{img_dir}/{sample_id}.{ext}"
    spectra_rel = f"spectra/{sample_id}.{'csv' if profile.spectra_format.startswith('csv') else 'npy'}"
    out = Path(out_dir)
    (out / img_dir).mkdir(parents=True, exist_ok=True)
    _write_image(out / image_rel, im, ext)
    _write_spectra(out / spectra_rel, s["spectra"], profile.spectra_format)
    row = {"sample_id": sample_id, "slice_id": sid, "image": image_rel, "spectra": spectra_rel, "dos": s["dos"]}
    lat = {"sample_id": sample_id, "slice_id": sid, "dos": s["dos"], "image_format": fmt, **s["latents"]}
    return {"manifest": row, "latents": lat}


# ----------------------------------------------------------------------------------------------
# The folder
# ----------------------------------------------------------------------------------------------


def _check_args(profile: str, scale: float) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive number, got {scale!r}")


def _sample_ids(profile: Profile, n_total: int) -> list[str]:
    width = max(4, len(str(n_total - 1)))
    return [f"{i:0{width}d}" if profile.id_style == "digits" else f"s{i:0{width}d}" for i in range(n_total)]


def _render_all(tasks: list[tuple], workers: int) -> list[dict]:
    workers = workers if workers and workers > 1 else 1  # 0 or None: in-process, as 1
    return list(
        map_ordered(
            _work,
            tasks,
            workers=workers,
            desc="variants",
            chunksize=max(1, len(tasks) // (workers * 8)),
            show_progress=False,
        )
    )


def _describe(profile: Profile) -> str:
    shifts = "; ".join(
        f"slice {sid}: " + ", ".join(f"{k}={v}" for k, v in vars(sh).items() if v != getattr(SliceShift(), k))
        for sid, sh in profile.shifts.items()
    )
    return f"{profile.mimics}. Instrument shifts: {shifts or 'none'}."


def _dataset_info(p: Profile, seed: int, scale: float, slices: list[str], results: list[dict]) -> dict:
    """The ``dataset.json`` dict: the params to train on the folder, and how it was made."""
    counts = scaled_counts(p, scale)
    frame = scaled_frame(p, scale)
    dos = np.array([r["manifest"]["dos"] for r in results])
    per_slice = {
        sid: {
            "n": counts[sid],
            "dos_mean": float(dos[np.array(slices) == sid].mean()),
            "dos_std": float(dos[np.array(slices) == sid].std()),
        }
        for sid in p.counts
    }
    return {
        "data": {"n_spectra": p.n_spectra, "spectrum_length": p.spectrum_length, "grid": list(p.grid)},
        "split": {"train_slices": list(p.train_slices), "test_slices": list(p.test_slices)},
        "profile": p.name,
        "description": _describe(p),
        "details": {
            "seed": int(seed),
            "scale": float(scale),
            "counts": counts,
            "frame": {"height": frame[0], "width": frame[1]},
            "image_formats": list(p.image_formats),
            "spectra_format": p.spectra_format,
            "label": {"intercept": p.label_intercept, "scale": p.label_scale, "per_slice": per_slice},
            "shifts": {sid: vars(sh) | {"tint": list(sh.tint)} for sid, sh in p.shifts.items()},
            "generator": "metallo.data.variants",
        },
    }


def make_variant(out_dir, profile: str, seed: int = 0, scale: float = 1.0, workers: int = 1) -> dict:
    """Write the raw folder of ``profile`` into ``out_dir`` and return its ``dataset.json`` dict.

    Rerunning deletes ``manifest.csv``, ``latents.csv``, ``dataset.json``, ``images/`` and ``spectra/``
    in ``out_dir`` first (nothing else). ``workers`` > 1 uses processes; the output does not depend on it.
    """
    _check_args(profile, scale)
    p = PROFILES[profile]
    frame = scaled_frame(p, scale)
    slices = [sid for sid, _ in sample_seeds(profile, seed, scale)]
    ids = _sample_ids(p, len(slices))
    seqs = profile_seq(p, seed).spawn(len(slices))

    out = Path(out_dir)
    reset_raw_folder(out, (MANIFEST, LATENTS, DATASET_FILE))
    results = _render_all(
        [(p.name, i, seqs[i], slices[i], ids[i], str(out), frame) for i in range(len(slices))], workers
    )

    lat_rows = [r["latents"] for r in results]
    write_table(out / LATENTS, list(lat_rows[0]), lat_rows, format_latent)
    info = _dataset_info(p, seed, scale, slices, results)
    write_json(out / DATASET_FILE, info)
    # the manifest is written last (atomically): a folder with a manifest is complete
    write_table(
        out / MANIFEST,
        MANIFEST_COLUMNS,
        [r["manifest"] for r in results],
        lambda _, v: f"{v:.9g}" if isinstance(v, float) else str(v),
    )
    return info
