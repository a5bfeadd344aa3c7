"""Foreign-instrument variants of the demo generative model (test data from instruments Metallo never saw).

The demo set (:mod:`metallo.data.synthesize`) comes from one idealised instrument: 8-bit RGB PNG
micrographs of 300 x 300 px, float reflectance spectra, a label near 2. Real laboratories differ.
This module keeps the demo's *latent model* (``draw_latents``, ``render_micrograph``,
``render_spectra``, ``cell_fractions``, ``dos_from_latents``: the same microstructure drives image,
spectra and label) and passes its output through the transforms of another instrument: a camera
with another frame, bit depth and file format; a spectrometer that reports raw counts with a dark
offset and its own spectral response; another label unit; and specimen-to-specimen shifts that are
present only on the test slice. One profile (``local``) changes the latent model itself.

Profiles (``PROFILES``; the exact ``data:``/``split:`` values are in each folder's ``dataset.json``):

``camera16``
    A lab with a machine-vision camera and a raw-count spectrometer. Frames 320 x 240 (W x H,
    landscape). Images cycle per sample through 8-bit RGB PNG, 16-bit greyscale PNG holding 12-bit
    values (0..4095, luminance) and palette (P) PNG. Spectra: float32 raw counts (dark offset about
    200, instrument response peaked near 640 nm, shot noise; roughly 200..40,000 counts), 24 x 1600 on a
    6 x 4 grid. Label 0.01 + 0.004 * z, z = the demo label standardised to unit variance.
    Slices "1" (train), "2" (test). **Test-slice shift:** image brightness x 0.75 (camera gain /
    illumination) and spectrometer gain x 1.3.
``specimens3``
    Three specimens of one alloy on a 12-bit camera. Frames 320 x 240; images 16-bit greyscale PNG
    holding 12-bit values, under nested paths ``images/<slice>/...``. Spectra: uint16 integer counts
    (dark offset 300), 25 x 1024 on a 5 x 5 grid. Label 1500 + 40 * z. Slices "A", "B" (train), "C"
    (test). Mild shift on "B" (brightness x 0.95, spectrometer gain x 1.05). **Test-slice shift**
    on "C": micrographs x 0.6 with a warm tint (R, G, B) x (1.0, 0.85, 0.6) applied before the
    conversion to grey (so the contrast of the bluish second phase changes too), spectrometer
    gain x 1.8 and dark offset +600 counts.
``tiffcsv``
    Another lab's export: single-page TIFF images cycling through 8-bit RGB, 8-bit greyscale and
    16-bit greyscale (full 0..65535 range); spectra as headerless comma-separated *integer* CSV
    (dark offset 100), 16 x 512 on a 4 x 4 grid; portrait frames 240 x 320 (W x H). Numeric
    sample ids with leading zeros ("0000", "0001", ...). Label -3 + 0.5 * z (negative).
    Slices "L1" (train), "L2" (test). **Test-slice shift:** +5 % baseline: spectra + 5 % of the
    spectrometer's full scale (600 counts) and the images' black level lifted by 5 % of white.
``local``
    The label is carried only by *local* correspondence between a grid cell of the micrograph and
    that cell's spectrum (option ``Profile.per_cell=True`` of this generator). Every grid cell k
    has its own grain size d_k (log-uniform on [5, 25] px at 300 px; Voronoi seeds are drawn per
    cell, so the texture scale changes from cell to cell) and its own absorption-band depth
    (composition c_k uniform on [0, 1], seen only in spectrum k). Label::

        dos = mean_k( z_t,k * z_d,k ) + N(0, 0.01**2)

    with z_t,k = standardised log d_k and z_d,k = standardised c_k (population moments). Global
    statistics (mean texture, mean band depth, brightness) explain almost nothing: the expected
    R^2 of any function of the per-sample means is about 1/n_cells. 300 x 300 8-bit RGB PNG,
    float32 reflectance spectra 24 x 1600 on a 6 x 4 grid, as in the demo. Slices "1" (train),
    "2" (test), no instrument shift.
``local_mixed``
    As ``local`` plus a global term of equal variance: ``dos = mean_k(z_t,k * z_d,k) + z_phase /
    sqrt(n_cells) + noise``, z_phase the standardised second-phase fraction of the sample (seen in the
    whole micrograph and in every spectrum). Global features explain about half of it.
``local_grid5``
    As ``local`` on another instrument: 12-bit greyscale in 16-bit PNG, landscape 320 x 240 frames,
    float32 raw counts (dark offset 250, instrument response peaked near 620 nm), 25 x 1024 on a
    5 x 5 grid.

Every folder holds ``manifest.csv`` (the raw-folder contract: ``sample_id,slice_id,image,spectra,dos``),
the image and spectra files, ``latents.csv`` (ground truth for analysis, not part of the contract)
and ``dataset.json`` with the params a user sets to train on it::

    {"data": {"n_spectra", "spectrum_length", "grid"}, "split": {"train_slices", "test_slices"},
     "profile", "description", "details": {...}}

Spectrum row k is grid cell (k // cols, k % cols) over the whole frame actually written: non-square
frames are rendered as a square of the long side and centre-cropped, and the second-phase fractions
that drive the spectra are computed on the cropped mask.

Usage::

    python -m metallo.data.variants OUT_DIR --profile camera16 [--seed 0] [--scale 1.0] [--workers 1]

    from metallo.data.variants import make_variant
    info = make_variant("data/foreign/camera16", "camera16", seed=0, scale=0.1)

``scale`` multiplies the sample counts (at least 6 per train slice and 3 per test slice) and the
frame size (at least 64 px on the long side). Output is byte-identical for the same
(profile, seed, scale), whatever ``workers`` is: sample i uses the i-th child of
``np.random.SeedSequence([seed, crc32(profile)])``.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.spatial import cKDTree

from metallo.data.generative import (
    COMPOSITION_MOMENTS,
    COMPOSITION_RANGE,
    LABEL_COEFS,
    LABEL_INTERCEPT,
    LABEL_NOISE_STD,
    REFERENCE_SIZE,
    SLICE_PROFILES,
    SampleLatents,
    cell_bounds,
    cell_fractions,
    draw_latents,
    etched_grains,
    finish_micrograph,
    render_micrograph,
    render_spectra,
    wavelengths,
)
from metallo.data.ingest import MANIFEST, MANIFEST_COLUMNS
from metallo.data.synthesize import LATENTS, format_latent, reset_raw_folder, write_table
from metallo.io import write_file, write_json
from metallo.parallel import map_ordered

__all__ = [
    "PROFILES",
    "Profile",
    "SliceShift",
    "make_variant",
    "render_sample",
    "sample_seeds",
    "scaled_counts",
    "scaled_frame",
    "DEMO_DOS_STD",
    "LOCAL_GRAIN_RANGE",
]

#: Population std of the demo label (sqrt of 0.9² + 0.7² + 0.3² + 0.04²); z = (dos - 2) / DEMO_DOS_STD.
DEMO_DOS_STD = math.sqrt(sum(c * c for c in LABEL_COEFS.values()) + LABEL_NOISE_STD**2)

#: ``local`` profile: per-cell grain size (px at 300 px), log-uniform; label noise std.
LOCAL_GRAIN_RANGE = (5.0, 25.0)
LOCAL_LOG_GRAIN_MOMENTS = (
    (math.log(LOCAL_GRAIN_RANGE[0]) + math.log(LOCAL_GRAIN_RANGE[1])) / 2.0,
    (math.log(LOCAL_GRAIN_RANGE[1]) - math.log(LOCAL_GRAIN_RANGE[0])) / math.sqrt(12.0),
)
LOCAL_LABEL_NOISE_STD = 0.01

MIN_LONG_SIDE = 64
#: The params a user sets to train on the folder (``data:``, ``split:``) and how it was made.
DATASET_FILE = "dataset.json"
LUMA = np.array([0.299, 0.587, 0.114])
IMAGE_FORMATS = ("png_rgb8", "png_gray12", "png_palette", "tiff_rgb8", "tiff_gray8", "tiff_gray16")
SPECTRA_FORMATS = ("npy_reflectance", "npy_float32_counts", "npy_uint16_counts", "csv_int_counts")


# ----------------------------------------------------------------------------------------------
# Profiles
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceShift:
    """Instrument state while one slice was measured (applied after the demo renderers)."""

    image_gain: float = 1.0  # multiplies the micrograph intensity
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel factor (before any grey conversion)
    black_lift: float = 0.0  # added to the intensity, fraction of white
    spectro_gain: float = 1.0  # multiplies the spectral signal (not the dark offset)
    dark_add: float = 0.0  # counts added to the dark offset
    baseline_add: float = 0.0  # fraction of the spectrometer full scale added to every point


@dataclass(frozen=True)
class Profile:
    name: str
    mimics: str
    counts: dict  # slice id -> samples at scale 1 (generation order = dict order)
    train_slices: tuple
    test_slices: tuple
    frame: tuple  # (height, width) at scale 1
    grid: tuple  # (rows, cols)
    spectrum_length: int
    image_formats: tuple  # cycled by sample index
    spectra_format: str
    label_intercept: float
    label_scale: float
    shifts: dict = field(default_factory=dict)  # slice id -> SliceShift (absent = none)
    full_scale: float = 1.0  # counts for reflectance 1 at the response peak
    dark: float = 0.0  # dark offset, counts
    read_noise: float = 0.0  # counts
    response: tuple = (650.0, 1e9)  # (centre nm, width nm) of the Gaussian instrument response
    id_style: str = "s"  # "s" -> s0000; "digits" -> 0000
    nested_images: bool = False  # images/<slice>/<id>.ext
    per_cell: bool = False  # ``local``: per-cell texture/band latents and the per-cell label
    global_weight: float = 0.0  # per-cell profiles: weight of the sample-level phase-fraction term in the label

    @property
    def n_spectra(self) -> int:
        return self.grid[0] * self.grid[1]


#: The ``local`` profile; ``local_mixed`` and ``local_grid5`` differ from it only where stated.
_LOCAL = Profile(
    name="local",
    mimics="label carried only by per-cell correspondence: each grid cell has its own grain size (image) "
    "and absorption-band depth (its spectrum); label = mean over cells of their standardised product",
    counts={"1": 400, "2": 100},
    train_slices=("1",),
    test_slices=("2",),
    frame=(300, 300),
    grid=(6, 4),
    spectrum_length=1600,
    image_formats=("png_rgb8",),
    spectra_format="npy_reflectance",
    label_intercept=0.0,
    label_scale=1.0,
    per_cell=True,
)

PROFILES: dict[str, Profile] = {
    "camera16": Profile(
        name="camera16",
        mimics="machine-vision camera (mixed 8-bit RGB / 12-bit-in-16-bit grey / palette PNG, 320x240) "
        "and a raw-count spectrometer (float counts with dark offset); label in units ~0.01",
        counts={"1": 360, "2": 120},
        train_slices=("1",),
        test_slices=("2",),
        frame=(240, 320),
        grid=(6, 4),
        spectrum_length=1600,
        image_formats=("png_rgb8", "png_gray12", "png_palette"),
        spectra_format="npy_float32_counts",
        label_intercept=0.01,
        label_scale=0.004,
        shifts={"2": SliceShift(image_gain=0.75, spectro_gain=1.3)},
        full_scale=38000.0,
        dark=200.0,
        read_noise=8.0,
        response=(640.0, 130.0),
    ),
    "specimens3": Profile(
        name="specimens3",
        mimics="three specimens on a 12-bit greyscale camera (16-bit PNG) and a uint16-count spectrometer "
        "(5x5 grid, 1024 points); label near 1500; strong gain/dark/illumination change on the test specimen",
        counts={"A": 200, "B": 200, "C": 120},
        train_slices=("A", "B"),
        test_slices=("C",),
        frame=(240, 320),
        grid=(5, 5),
        spectrum_length=1024,
        image_formats=("png_gray12",),
        spectra_format="npy_uint16_counts",
        label_intercept=1500.0,
        label_scale=40.0,
        shifts={
            "B": SliceShift(image_gain=0.95, spectro_gain=1.05),
            "C": SliceShift(image_gain=0.6, tint=(1.0, 0.85, 0.6), spectro_gain=1.8, dark_add=600.0),
        },
        full_scale=30000.0,
        dark=300.0,
        read_noise=6.0,
        response=(700.0, 220.0),
        nested_images=True,
    ),
    "tiffcsv": Profile(
        name="tiffcsv",
        mimics="another lab's export: single-page 8/16-bit TIFF (RGB or grey, 240x320 portrait), integer CSV "
        "spectra (4x4 grid, 512 points), numeric sample ids, negative label scale",
        counts={"L1": 300, "L2": 100},
        train_slices=("L1",),
        test_slices=("L2",),
        frame=(320, 240),
        grid=(4, 4),
        spectrum_length=512,
        image_formats=("tiff_rgb8", "tiff_gray16", "tiff_gray8"),
        spectra_format="csv_int_counts",
        label_intercept=-3.0,
        label_scale=0.5,
        shifts={"L2": SliceShift(black_lift=0.05, baseline_add=0.05)},
        full_scale=12000.0,
        dark=100.0,
        read_noise=4.0,
        response=(600.0, 250.0),
        id_style="digits",
    ),
    "local": _LOCAL,
    "local_mixed": replace(
        _LOCAL,
        name="local_mixed",
        mimics="local correspondence plus a global term: the per-cell products of ``local`` and the sample's "
        "second-phase fraction (seen in the whole image and every spectrum) carry equal shares of the label",
        global_weight=1.0,
    ),
    "local_grid5": replace(
        _LOCAL,
        name="local_grid5",
        mimics="local correspondence on another instrument: 12-bit grey 320x240 frames, a raw-count "
        "spectrometer with 1,024 points on a 5x5 grid",
        frame=(240, 320),
        grid=(5, 5),
        spectrum_length=1024,
        image_formats=("png_gray12",),
        spectra_format="npy_float32_counts",
        full_scale=30000.0,
        dark=250.0,
        read_noise=6.0,
        response=(620.0, 150.0),
    ),
}


# ----------------------------------------------------------------------------------------------
# Sizes, seeds
# ----------------------------------------------------------------------------------------------


def scaled_counts(profile: Profile, scale: float) -> dict[str, int]:
    out = {}
    for sid, n in profile.counts.items():
        floor = 3 if sid in profile.test_slices else 6
        out[sid] = max(floor, int(round(n * scale)))
    return out


def scaled_frame(profile: Profile, scale: float) -> tuple[int, int]:
    h, w = profile.frame
    long_side = max(h, w)
    new_long = max(MIN_LONG_SIDE, int(round(long_side * min(scale, 1e6))))
    f = new_long / long_side
    return max(profile.grid[0], int(round(h * f))), max(profile.grid[1], int(round(w * f)))


def _profile_seq(profile: Profile, seed: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), zlib.crc32(profile.name.encode())])


def sample_seeds(profile: str, seed: int = 0, scale: float = 1.0) -> list[tuple[str, np.random.SeedSequence]]:
    """(slice id, SeedSequence) of every sample of ``make_variant(..., profile, seed, scale)``, in order.
    With :func:`render_sample` this re-renders any sample in memory (e.g. under another slice's shift)."""
    p = PROFILES[profile]
    counts = scaled_counts(p, scale)
    slices = [sid for sid in p.counts for _ in range(counts[sid])]
    return list(zip(slices, _profile_seq(p, seed).spawn(len(slices))))


def _stream(seq: np.random.SeedSequence, k: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=tuple(seq.spawn_key) + (k,)))


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def _crop_centre(a: np.ndarray, h: int, w: int) -> np.ndarray:
    y0 = (a.shape[0] - h) // 2
    x0 = (a.shape[1] - w) // 2
    return a[y0 : y0 + h, x0 : x0 + w]


def _render_local_micrograph(lat, cell_grain_sizes, rng, frame: tuple[int, int], grid) -> tuple[np.ndarray, np.ndarray]:
    """The demo micrograph with per-cell grain size: Voronoi seeds are drawn cell by cell (cells of
    the (h, w) frame) at the density of that cell's grain size; second phase and optics as in
    ``render_micrograph`` (slice "1" tint). Rendered as a square of the long side and centre-cropped
    like the other profiles. Returns (rgb uint8 (h, w, 3), phase mask (h, w))."""
    rows, cols = grid
    h, w = frame
    size = max(h, w)
    y0, x0 = (size - h) // 2, (size - w) // 2
    scale = size / REFERENCE_SIZE
    seeds = []
    for k, d in enumerate(cell_grain_sizes):
        r, c = divmod(k, cols)
        r0, r1 = (y0 + b for b in cell_bounds(h, rows, r))
        c0, c1 = (x0 + b for b in cell_bounds(w, cols, c))
        d_px = d * scale
        n = max(1, int(round((r1 - r0) * (c1 - c0) / (math.pi / 4.0 * d_px * d_px))))
        seeds.append(np.column_stack([rng.uniform(r0, r1, n), rng.uniform(c0, c1, n)]))
    seeds = np.concatenate(seeds)
    yy, xx = np.mgrid[0:size, 0:size]
    pts = np.column_stack([yy.ravel() + 0.5, xx.ravel() + 0.5])
    _, labels = cKDTree(seeds).query(pts, k=1)
    labels = labels.reshape(size, size)
    grey = etched_grains(labels, len(seeds), lat, rng)
    img, mask = finish_micrograph(grey, lat, rng, size, SLICE_PROFILES["1"])
    return _crop_centre(img, h, w), _crop_centre(mask, h, w)


def _apply_image_shift(img8: np.ndarray, shift: SliceShift) -> np.ndarray:
    """uint8 RGB -> float RGB in [0, 1] after the slice's camera gain, tint and black level."""
    f = img8.astype(np.float64) / 255.0
    f = f * (shift.image_gain * np.asarray(shift.tint))[None, None, :] + shift.black_lift
    return np.clip(f, 0.0, 1.0)


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


def _to_counts(refl: np.ndarray, profile: Profile, shift: SliceShift, rng: np.random.Generator) -> np.ndarray:
    """Reflectance (n, L) -> raw counts (float64): dark + gain * full_scale * response * R + noise."""
    lam = wavelengths(refl.shape[1])
    centre, width = profile.response
    resp = np.exp(-0.5 * ((lam - centre) / width) ** 2)
    signal = np.maximum(refl.astype(np.float64), 0.0) * resp[None, :] * profile.full_scale * shift.spectro_gain
    dark = profile.dark + shift.dark_add + rng.normal(0.0, 0.01 * profile.dark + 1e-9, size=(refl.shape[0], 1))
    noise = rng.standard_normal(refl.shape) * np.sqrt(signal + profile.read_noise**2)
    return dark + signal + shift.baseline_add * profile.full_scale + noise


def render_sample(profile, seq: np.random.SeedSequence, slice_id: str, frame: tuple[int, int]) -> dict:
    """One sample in memory: {"image": float RGB [0,1] (H, W, 3) after the slice shift, "image8": the
    rendered uint8 RGB before it, "mask", "spectra" (reflectance or counts, float64/float32), "dos",
    "latents": dict, "rng": the instrument stream, used next for image read noise}. ``profile`` is a
    name or a :class:`Profile` (e.g. ``dataclasses.replace(PROFILES["local"], frame=(240, 320))``).
    Streams: 0 latents, 1 micrograph, 2 spectra, 3 instrument, 4 per-cell latents."""
    profile = PROFILES[profile] if isinstance(profile, str) else profile
    shift = profile.shifts.get(slice_id, SliceShift())
    h, w = frame
    rows, cols = profile.grid
    lat: SampleLatents = draw_latents(_stream(seq, 0))
    info: dict = {}
    if profile.per_cell:
        r4 = _stream(seq, 4)
        n = profile.n_spectra
        lo, hi = LOCAL_GRAIN_RANGE
        log_d = r4.uniform(math.log(lo), math.log(hi), n)
        comp = r4.uniform(*COMPOSITION_RANGE, n)
        z_t = (log_d - LOCAL_LOG_GRAIN_MOMENTS[0]) / LOCAL_LOG_GRAIN_MOMENTS[1]
        z_d = (comp - COMPOSITION_MOMENTS[0]) / COMPOSITION_MOMENTS[1]
        noise = float(r4.normal(0.0, LOCAL_LABEL_NOISE_STD))
        dos = float(np.mean(z_t * z_d)) + profile.global_weight * lat.z_phase / math.sqrt(n) + noise
        img8, mask = _render_local_micrograph(lat.image, np.exp(log_d), _stream(seq, 1), (h, w), profile.grid)
        fr = cell_fractions(mask, profile.grid)
        r2 = _stream(seq, 2)
        refl = np.concatenate(
            [render_spectra(fr[k : k + 1], float(comp[k]), r2, profile.spectrum_length) for k in range(n)]
        )
        for k in range(n):
            info[f"z_tex_{k:02d}"] = float(z_t[k])
            info[f"z_dip_{k:02d}"] = float(z_d[k])
        info["label_noise"] = noise
        info["z_phase"] = float(lat.z_phase)
    else:
        img8, mask, _ = render_micrograph(lat.image, _stream(seq, 1), max(h, w), "1")
        img8, mask = _crop_centre(img8, h, w), _crop_centre(mask, h, w)
        fr = cell_fractions(mask, profile.grid)
        refl = render_spectra(fr, lat.composition, _stream(seq, 2), profile.spectrum_length, "1")
        z = (lat.dos - LABEL_INTERCEPT) / DEMO_DOS_STD
        dos = profile.label_intercept + profile.label_scale * z
        info.update(
            z_mix=z, demo_dos=lat.dos, z_grain=lat.z_grain, z_composition=lat.z_composition, z_phase=lat.z_phase
        )
    rng3 = _stream(seq, 3)
    spectra = refl if profile.spectra_format == "npy_reflectance" else _to_counts(refl, profile, shift, rng3)
    info.update(
        grain_size=lat.image.grain_size,
        phase_fraction=lat.image.phase_fraction,
        composition=lat.composition,
        realised_phase_fraction=float(mask.mean()),
    )
    return {
        "image8": img8,
        "image": _apply_image_shift(img8, shift),
        "mask": mask,
        "spectra": spectra,
        "dos": float(dos),
        "latents": info,
        "rng": rng3,
    }


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


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
    if ext == "png":
        write_file(out / image_rel, lambda fh: im.save(fh, format="PNG", compress_level=6))
    else:
        write_file(out / image_rel, lambda fh: im.save(fh, format="TIFF"))
    _write_spectra(out / spectra_rel, s["spectra"], profile.spectra_format)
    row = {"sample_id": sample_id, "slice_id": sid, "image": image_rel, "spectra": spectra_rel, "dos": s["dos"]}
    lat = {"sample_id": sample_id, "slice_id": sid, "dos": s["dos"], "image_format": fmt, **s["latents"]}
    return {"manifest": row, "latents": lat}


def _describe(profile: Profile) -> str:
    shifts = "; ".join(
        f"slice {sid}: " + ", ".join(f"{k}={v}" for k, v in vars(sh).items() if v != getattr(SliceShift(), k))
        for sid, sh in profile.shifts.items()
    )
    return f"{profile.mimics}. Instrument shifts: {shifts or 'none'}."


def make_variant(out_dir, profile: str, seed: int = 0, scale: float = 1.0, workers: int = 1) -> dict:
    """Write the raw folder of ``profile`` into ``out_dir`` and return its ``dataset.json`` dict.

    Rerunning deletes ``manifest.csv``, ``latents.csv``, ``dataset.json``, ``images/`` and ``spectra/``
    in ``out_dir`` first (nothing else). ``workers`` > 1 uses processes; the output does not depend on it.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    p = PROFILES[profile]
    counts = scaled_counts(p, scale)
    frame = scaled_frame(p, scale)
    slices = [sid for sid, _ in sample_seeds(profile, seed, scale)]
    n_total = len(slices)
    width = max(4, len(str(n_total - 1)))
    ids = [f"{i:0{width}d}" if p.id_style == "digits" else f"s{i:0{width}d}" for i in range(n_total)]
    seqs = _profile_seq(p, seed).spawn(n_total)

    out = Path(out_dir)
    reset_raw_folder(out, (MANIFEST, LATENTS, DATASET_FILE))

    tasks = [(p.name, i, seqs[i], slices[i], ids[i], str(out), frame) for i in range(n_total)]
    workers = workers if workers and workers > 1 else 1  # 0 or None: in-process, as 1
    results = list(
        map_ordered(
            _work,
            tasks,
            workers=workers,
            desc="variants",
            chunksize=max(1, n_total // (workers * 8)),
            show_progress=False,
        )
    )

    lat_rows = [r["latents"] for r in results]
    write_table(out / LATENTS, list(lat_rows[0]), lat_rows, format_latent)
    dos = np.array([r["manifest"]["dos"] for r in results])
    per_slice = {
        sid: {
            "n": counts[sid],
            "dos_mean": float(dos[np.array(slices) == sid].mean()),
            "dos_std": float(dos[np.array(slices) == sid].std()),
        }
        for sid in p.counts
    }
    info = {
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
    write_json(out / DATASET_FILE, info)
    # the manifest is written last (atomically): a folder with a manifest is complete
    write_table(
        out / MANIFEST,
        MANIFEST_COLUMNS,
        [r["manifest"] for r in results],
        lambda _, v: f"{v:.9g}" if isinstance(v, float) else str(v),
    )
    return info


def _main(argv=None) -> None:
    import argparse
    import time

    ap = argparse.ArgumentParser(description="Write a foreign-instrument variant of the Metallo demo raw folder.")
    ap.add_argument("out_dir")
    ap.add_argument("--profile", required=True, choices=sorted(PROFILES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--scale", type=float, default=1.0, help="multiplies sample counts and frame size (e.g. 0.1 for tests)"
    )
    ap.add_argument("--workers", type=int, default=1, help="processes (output does not depend on it)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        info = make_variant(a.out_dir, a.profile, seed=a.seed, scale=a.scale, workers=a.workers)
    except ValueError as err:
        ap.error(str(err))
    print(json.dumps(info, indent=2))
    print(
        f"variants: {sum(info['details']['counts'].values())} samples in "
        f"{time.perf_counter() - t0:.1f} s -> {a.out_dir}"
    )


if __name__ == "__main__":
    _main()
