"""One sample of a profile, in memory: the demo latent model, then the profile's instrument.

Streams of a sample's ``SeedSequence``: 0 latents, 1 micrograph, 2 spectra, 3 instrument (spectrometer
noise, then image read noise), 4 per-cell latents (``local`` profiles).
"""

from __future__ import annotations

import math

import numpy as np
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
    matrix_base,
    render_micrograph,
    render_spectra,
    wavelengths,
)
from metallo.data.variants.mechanisms import band, draw_cell_latents, render_mechanism_micrograph
from metallo.data.variants.profiles import PROFILES, Profile, SliceShift

#: Population std of the demo label (sqrt of 0.9² + 0.7² + 0.3² + 0.04²); z = (dos - 2) / DEMO_DOS_STD.
DEMO_DOS_STD = math.sqrt(sum(c * c for c in LABEL_COEFS.values()) + LABEL_NOISE_STD**2)

#: ``local`` profile: per-cell grain size (px at 300 px), log-uniform; label noise std.
LOCAL_GRAIN_RANGE = (5.0, 25.0)
LOCAL_LOG_GRAIN_MOMENTS = (
    (math.log(LOCAL_GRAIN_RANGE[0]) + math.log(LOCAL_GRAIN_RANGE[1])) / 2.0,
    (math.log(LOCAL_GRAIN_RANGE[1]) - math.log(LOCAL_GRAIN_RANGE[0])) / math.sqrt(12.0),
)
LOCAL_LABEL_NOISE_STD = 0.01


def stream(seq: np.random.SeedSequence, k: int) -> np.random.Generator:
    """Stream ``k`` of a sample (see the module docstring)."""
    return np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=tuple(seq.spawn_key) + (k,)))


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


def _to_counts(refl: np.ndarray, profile: Profile, shift: SliceShift, rng: np.random.Generator) -> np.ndarray:
    """Reflectance (n, L) -> raw counts (float64): dark + gain * full_scale * response * R + noise."""
    lam = wavelengths(refl.shape[1])
    centre, width = profile.response
    resp = np.exp(-0.5 * ((lam - centre) / width) ** 2)
    signal = np.maximum(refl.astype(np.float64), 0.0) * resp[None, :] * profile.full_scale * shift.spectro_gain
    dark = profile.dark + shift.dark_add + rng.normal(0.0, 0.01 * profile.dark + 1e-9, size=(refl.shape[0], 1))
    noise = rng.standard_normal(refl.shape) * np.sqrt(signal + profile.read_noise**2)
    return dark + signal + shift.baseline_add * profile.full_scale + noise


def _render_per_cell(profile: Profile, lat: SampleLatents, seq, frame: tuple[int, int]) -> tuple:
    """``per_cell`` profiles: per-cell grain sizes and band depths and the per-cell label.
    Returns (uint8 RGB, phase mask, reflectance, dos, latents dict)."""
    r4 = stream(seq, 4)
    n = profile.n_spectra
    lo, hi = LOCAL_GRAIN_RANGE
    log_d = r4.uniform(math.log(lo), math.log(hi), n)
    comp = r4.uniform(*COMPOSITION_RANGE, n)
    z_t = (log_d - LOCAL_LOG_GRAIN_MOMENTS[0]) / LOCAL_LOG_GRAIN_MOMENTS[1]
    z_d = (comp - COMPOSITION_MOMENTS[0]) / COMPOSITION_MOMENTS[1]
    noise = float(r4.normal(0.0, LOCAL_LABEL_NOISE_STD))
    dos = float(np.mean(z_t * z_d)) + profile.global_weight * lat.z_phase / math.sqrt(n) + noise
    img8, mask = _render_local_micrograph(lat.image, np.exp(log_d), stream(seq, 1), frame, profile.grid)
    fr = cell_fractions(mask, profile.grid)
    r2 = stream(seq, 2)
    refl = np.concatenate(
        [render_spectra(fr[k : k + 1], float(comp[k]), r2, profile.spectrum_length) for k in range(n)]
    )
    info: dict = {}
    for k in range(n):
        info[f"z_tex_{k:02d}"] = float(z_t[k])
        info[f"z_dip_{k:02d}"] = float(z_d[k])
    info["label_noise"] = noise
    info["z_phase"] = float(lat.z_phase)
    return img8, mask, refl, dos, info


def _render_mechanism(profile: Profile, lat: SampleLatents, seq, frame: tuple[int, int]) -> tuple:
    """Local-mechanism profiles (:mod:`.mechanisms`): per-cell image and spectral properties that texture
    statistics and band depths do not encode; the label is the mean of their standardised products.
    Returns (uint8 RGB, phase mask, reflectance, dos, latents dict)."""
    image, spectral = profile.mechanism
    n = profile.n_spectra
    r4 = stream(seq, 4)
    cells = draw_cell_latents(r4, n, image, spectral)
    noise = float(r4.normal(0.0, LOCAL_LABEL_NOISE_STD))
    local = float(np.mean(cells["z_image"] * cells["z_spectral"]))
    dos = profile.label_intercept + profile.label_scale * (
        local + profile.global_weight * lat.z_phase / math.sqrt(n) + noise
    )
    img8, mask = render_mechanism_micrograph(image, cells["image"], lat.image, stream(seq, 1), frame, profile.grid)
    lam = wavelengths(profile.spectrum_length)
    matrix = matrix_base(lam)[None, :] * np.stack(
        [band(lam, spectral, v, d) for v, d in zip(cells["spectral"], cells["depth"])]
    )
    refl = render_spectra(
        cell_fractions(mask, profile.grid), 0.0, stream(seq, 2), profile.spectrum_length, matrix=matrix
    )
    info: dict = {}
    for k in range(n):
        info[f"z_image_{k:02d}"] = float(cells["z_image"][k])
        info[f"z_spectral_{k:02d}"] = float(cells["z_spectral"][k])
    info.update(local_term=local, label_noise=noise, z_phase=float(lat.z_phase))
    return img8, mask, refl, dos, info


def _render_global(profile: Profile, lat: SampleLatents, seq, frame: tuple[int, int]) -> tuple:
    """The other profiles: the demo micrograph and spectra, the demo label rescaled.
    Returns (uint8 RGB, phase mask, reflectance, dos, latents dict)."""
    h, w = frame
    img8, mask, _ = render_micrograph(lat.image, stream(seq, 1), max(h, w), "1")
    img8, mask = _crop_centre(img8, h, w), _crop_centre(mask, h, w)
    fr = cell_fractions(mask, profile.grid)
    refl = render_spectra(fr, lat.composition, stream(seq, 2), profile.spectrum_length, "1")
    z = (lat.dos - LABEL_INTERCEPT) / DEMO_DOS_STD
    dos = profile.label_intercept + profile.label_scale * z
    info = dict(z_mix=z, demo_dos=lat.dos, z_grain=lat.z_grain, z_composition=lat.z_composition, z_phase=lat.z_phase)
    return img8, mask, refl, dos, info


def render_sample(profile, seq: np.random.SeedSequence, slice_id: str, frame: tuple[int, int]) -> dict:
    """One sample in memory: {"image": float RGB [0,1] (H, W, 3) after the slice shift, "image8": the
    rendered uint8 RGB before it, "mask", "spectra" (reflectance or counts, float64/float32), "dos",
    "latents": dict, "rng": the instrument stream, used next for image read noise}. ``profile`` is a
    name or a :class:`Profile` (e.g. ``dataclasses.replace(PROFILES["local"], frame=(240, 320))``).
    Streams: 0 latents, 1 micrograph, 2 spectra, 3 instrument, 4 per-cell latents."""
    profile = PROFILES[profile] if isinstance(profile, str) else profile
    shift = profile.shifts.get(slice_id, SliceShift())
    lat: SampleLatents = draw_latents(stream(seq, 0))
    render = _render_global
    if profile.per_cell:
        render = _render_mechanism if profile.mechanism else _render_per_cell
    img8, mask, refl, dos, info = render(profile, lat, seq, frame)
    rng3 = stream(seq, 3)
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
