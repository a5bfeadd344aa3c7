"""The generative model of the demo data: latents -> micrograph, local reflectance spectra, DOS label.

One set of latent microstructure variables per sample drives everything:

* ``grain_size`` d (mean grain diameter in pixels, expressed at a 300 px image; log-uniform in
  [12, 60]) -> image only (Voronoi grains);
* ``phase_fraction`` phi of a dark second phase (uniform in [0.05, 0.35]) with a linear spatial
  gradient (+-50 % across the image, random direction) -> image *and* spectra (the spectrum of grid
  cell (r, c) is a mixture weighted by the actual second-phase area fraction in that cell);
* ``composition`` c (uniform in [0, 1]) -> spectra only (depth of an absorption band at 620 nm in the
  matrix reflectance); the image generator never sees it;
* nuisance variables (per-grain grey level, boundary etch depth, illumination gain, vignetting,
  noise, spectrometer gain/baseline) that do not enter the label.

Label::

    dos = 2.0 + 0.9 * z_g + 0.7 * z_c + 0.3 * z_phi + N(0, 0.04**2)

where z_g = standardised log(grain_size) (larger grains -> higher DOS), z_c = standardised
composition and z_phi = standardised phase_fraction, each standardised with the *population*
mean/std of its distribution (not the sample's). See docs/data.md.

Pure functions of their arguments and random generators: nothing here writes files (the
``synthesize`` stage, :mod:`metallo.data.synthesize`, does). :func:`generate_sample` gives one
sample from its ``np.random.SeedSequence``; :mod:`metallo.data.variants` reuses the parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special
from scipy.spatial import cKDTree

# ----------------------------------------------------------------------------------------------
# Constants of the generative model
# ----------------------------------------------------------------------------------------------

REFERENCE_SIZE = 300  # grain_size is expressed in pixels of a REFERENCE_SIZE x REFERENCE_SIZE image

GRAIN_SIZE_RANGE = (12.0, 60.0)  # log-uniform
PHASE_FRACTION_RANGE = (0.05, 0.35)  # uniform
COMPOSITION_RANGE = (0.0, 1.0)  # uniform
PHASE_GRADIENT = 0.5  # local phase fraction = phi * (1 + 0.5 * g(x, y)), g in [-1, 1]

LABEL_INTERCEPT = 2.0
LABEL_COEFS = {"z_grain": 0.9, "z_composition": 0.7, "z_phase": 0.3}
LABEL_NOISE_STD = 0.04


def _uniform_moments(lo: float, hi: float) -> tuple[float, float]:
    return (lo + hi) / 2.0, (hi - lo) / math.sqrt(12.0)


# population mean/std used to standardise the latents in the label equation
LOG_GRAIN_MOMENTS = _uniform_moments(math.log(GRAIN_SIZE_RANGE[0]), math.log(GRAIN_SIZE_RANGE[1]))
PHASE_MOMENTS = _uniform_moments(*PHASE_FRACTION_RANGE)
COMPOSITION_MOMENTS = _uniform_moments(*COMPOSITION_RANGE)

# spectra
WAVELENGTH_RANGE_NM = (400.0, 1000.0)
BAND_CENTER_NM = 620.0
BAND_SIGMA_NM = 35.0
BAND_DEPTH_BASE = 0.05
BAND_DEPTH_SLOPE = 0.35  # depth = 0.05 + 0.35 * composition
SPECTRUM_GAIN_STD = 0.01
SPECTRUM_NOISE_STD = 0.004
BASELINE_WIGGLE_STD = 0.003

# image rendering
GRAIN_MEAN_LEVEL = 0.68
BLOB_SIGMA_REF = 2.5  # smoothing (px at REFERENCE_SIZE) of the random field thresholded into particles
PHASE_RGB = np.array([0.19, 0.20, 0.29])  # dark, slightly bluish second phase (before tint/illumination)

# Instrument differences between specimens ("slices"). Same latent distributions for every slice.
SLICE_PROFILES: dict[str, dict] = {
    "1": {
        "image_gain": 1.00,
        "tint": (1.00, 0.95, 0.86),
        "spectro_gain": 1.00,
        "spectro_offset": 0.000,
    },
    "2": {
        "image_gain": 0.93,
        "tint": (0.98, 0.95, 0.88),
        "spectro_gain": 1.03,
        "spectro_offset": 0.005,
    },
}


# ----------------------------------------------------------------------------------------------
# Latents
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageLatents:
    """Everything the micrograph depends on (composition is deliberately absent)."""

    grain_size: float  # mean grain diameter, px at REFERENCE_SIZE
    phase_fraction: float  # mean area fraction of the second phase
    gradient_angle: float  # direction of the phase-fraction gradient (radians)
    grain_contrast: float  # std of per-grain grey level (orientation contrast), nuisance
    etch_depth: float  # relative darkening of grain boundaries, nuisance
    illumination: float  # overall illumination gain, nuisance
    vignette: float  # vignetting strength, nuisance
    vignette_dx: float  # vignette centre offset (fraction of the image size), nuisance
    vignette_dy: float
    noise_sigma: float  # image noise std (in [0, 1] intensity units), nuisance


@dataclass(frozen=True)
class SampleLatents:
    image: ImageLatents
    composition: float
    label_noise: float

    @property
    def z_grain(self) -> float:
        return (math.log(self.image.grain_size) - LOG_GRAIN_MOMENTS[0]) / LOG_GRAIN_MOMENTS[1]

    @property
    def z_composition(self) -> float:
        return (self.composition - COMPOSITION_MOMENTS[0]) / COMPOSITION_MOMENTS[1]

    @property
    def z_phase(self) -> float:
        return (self.image.phase_fraction - PHASE_MOMENTS[0]) / PHASE_MOMENTS[1]

    @property
    def dos(self) -> float:
        return dos_from_latents(self.z_grain, self.z_composition, self.z_phase, self.label_noise)


def dos_from_latents(z_grain, z_composition, z_phase, noise=0.0):
    """The label equation (works on scalars or numpy arrays)."""
    return (
        LABEL_INTERCEPT
        + LABEL_COEFS["z_grain"] * z_grain
        + LABEL_COEFS["z_composition"] * z_composition
        + LABEL_COEFS["z_phase"] * z_phase
        + noise
    )


def draw_latents(rng: np.random.Generator) -> SampleLatents:
    """Draw one sample's latents (all independent)."""
    lo, hi = GRAIN_SIZE_RANGE
    grain_size = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    phase_fraction = float(rng.uniform(*PHASE_FRACTION_RANGE))
    composition = float(rng.uniform(*COMPOSITION_RANGE))
    image = ImageLatents(
        grain_size=grain_size,
        phase_fraction=phase_fraction,
        gradient_angle=float(rng.uniform(0.0, 2.0 * math.pi)),
        grain_contrast=float(rng.uniform(0.04, 0.10)),
        etch_depth=float(rng.uniform(0.45, 0.75)),
        illumination=float(rng.uniform(0.92, 1.05)),
        vignette=float(rng.uniform(0.05, 0.18)),
        vignette_dx=float(rng.uniform(-0.15, 0.15)),
        vignette_dy=float(rng.uniform(-0.15, 0.15)),
        noise_sigma=float(rng.uniform(0.008, 0.025)),
    )
    label_noise = float(rng.normal(0.0, LABEL_NOISE_STD))
    return SampleLatents(image=image, composition=composition, label_noise=label_noise)


# ----------------------------------------------------------------------------------------------
# Micrograph
# ----------------------------------------------------------------------------------------------

_PIXEL_CACHE: dict[int, np.ndarray] = {}


def _pixel_centres(size: int) -> np.ndarray:
    pts = _PIXEL_CACHE.get(size)
    if pts is None:
        yy, xx = np.mgrid[0:size, 0:size]
        pts = np.column_stack([yy.ravel() + 0.5, xx.ravel() + 0.5]).astype(np.float64)
        _PIXEL_CACHE[size] = pts
    return pts


def _phase_gradient(lat: ImageLatents, size: int) -> np.ndarray:
    """g(x, y) in [-1, 1]: linear ramp along gradient_angle, scaled so its extremes over the image are +-1."""
    coords = (np.arange(size) + 0.5) / size - 0.5
    dy, dx = math.sin(lat.gradient_angle), math.cos(lat.gradient_angle)
    ramp = coords[:, None] * dy + coords[None, :] * dx
    extent = 0.5 * (abs(dx) + abs(dy)) * (size - 1) / size
    return ramp / extent


def etched_grains(labels: np.ndarray, n_grains: int, lat: ImageLatents, rng: np.random.Generator) -> np.ndarray:
    """Grey level of each grain (random around GRAIN_MEAN_LEVEL), grain boundaries darkened by etching."""
    levels = np.clip(GRAIN_MEAN_LEVEL + lat.grain_contrast * rng.standard_normal(n_grains), 0.35, 0.95)
    grey = levels[labels]
    # boundaries: both pixels of every horizontally / vertically adjacent pair with different labels
    boundary = np.zeros(labels.shape, dtype=bool)
    dh = labels[:, 1:] != labels[:, :-1]
    dv = labels[1:, :] != labels[:-1, :]
    boundary[:, 1:] |= dh
    boundary[:, :-1] |= dh
    boundary[1:, :] |= dv
    boundary[:-1, :] |= dv
    return np.where(boundary, grey * (1.0 - lat.etch_depth), grey)


def finish_micrograph(
    grey: np.ndarray, lat: ImageLatents, rng: np.random.Generator, size: int, prof: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Grain grey levels -> the uint8 RGB micrograph: second phase, then the microscope's optics.

    Returns the image and the second-phase mask. ``prof`` is a slice's illumination profile.
    """
    scale = size / REFERENCE_SIZE
    # --- second phase: threshold of a smoothed Gaussian field, threshold set per pixel so that the
    # expected local area fraction equals phi(x, y) = phi * (1 + 0.5 g(x, y)) ----------------------
    field = ndimage.gaussian_filter(
        rng.standard_normal((size, size)), sigma=max(0.7, BLOB_SIGMA_REF * scale), mode="wrap"
    )
    field = (field - field.mean()) / (field.std() + 1e-12)
    local_phi = np.clip(lat.phase_fraction * (1.0 + PHASE_GRADIENT * _phase_gradient(lat, size)), 1e-4, 1 - 1e-4)
    mask = field > special.ndtri(1.0 - local_phi)
    return apply_optics(paint_phase(grey, mask, rng), lat, rng, prof), mask


def paint_phase(grey: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey grain levels (H, W) -> float RGB with the second phase (``mask``) painted in its dark colour."""
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgb[mask] = PHASE_RGB[None, :] * (1.0 + 0.08 * rng.standard_normal((int(mask.sum()), 1)))
    return rgb


def apply_optics(rgb: np.ndarray, lat: ImageLatents, rng: np.random.Generator, prof: dict) -> np.ndarray:
    """Float RGB (H, W, 3) -> uint8 after the microscope's tint, illumination, vignette and noise."""
    height, width = rgb.shape[:2]
    yy = (np.arange(height) + 0.5) / height - 0.5 - lat.vignette_dy
    xx = (np.arange(width) + 0.5) / width - 0.5 - lat.vignette_dx
    r2 = (yy[:, None] ** 2 + xx[None, :] ** 2) / 0.5
    illum = lat.illumination * prof["image_gain"] * (1.0 - lat.vignette * r2)
    rgb = rgb * np.asarray(prof["tint"])[None, None, :] * illum[:, :, None]
    rgb = rgb + lat.noise_sigma * rng.standard_normal(rgb.shape)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def render_micrograph(lat: ImageLatents, rng: np.random.Generator, size: int, slice_id: str = "1"):
    """Render one micrograph.

    Returns ``(rgb_uint8 (size, size, 3), phase_mask bool (size, size), n_grains)``. Depends only on
    the image latents, ``rng``, ``size`` and the slice's illumination profile.
    """
    prof = SLICE_PROFILES[slice_id]
    scale = size / REFERENCE_SIZE

    # --- Voronoi grains: n seeds so that the mean grain area is pi/4 * d^2 ------------------------
    d_px = lat.grain_size * scale
    n_grains = max(2, int(round(size * size / (math.pi / 4.0 * d_px * d_px))))
    seeds = rng.uniform(0.0, size, size=(n_grains, 2))
    _, labels = cKDTree(seeds).query(_pixel_centres(size), k=1)
    labels = labels.reshape(size, size)

    grey = etched_grains(labels, n_grains, lat, rng)

    img, mask = finish_micrograph(grey, lat, rng, size, prof)
    return img, mask, n_grains


# ----------------------------------------------------------------------------------------------
# Spectra
# ----------------------------------------------------------------------------------------------


def wavelengths(spectrum_length: int) -> np.ndarray:
    """Wavelength axis in nm (linear from 400 to 1000)."""
    return np.linspace(*WAVELENGTH_RANGE_NM, spectrum_length)


def matrix_base(lam: np.ndarray) -> np.ndarray:
    """The matrix phase's reflectance without its absorption band."""
    x = (lam - WAVELENGTH_RANGE_NM[0]) / (WAVELENGTH_RANGE_NM[1] - WAVELENGTH_RANGE_NM[0])
    return 0.55 + 0.25 * x - 0.06 * np.exp(-x / 0.08)  # rising metallic curve with a mild knee in the blue


def matrix_reflectance(lam: np.ndarray, composition: float) -> np.ndarray:
    base = matrix_base(lam)
    depth = BAND_DEPTH_BASE + BAND_DEPTH_SLOPE * composition
    band = np.exp(-0.5 * ((lam - BAND_CENTER_NM) / BAND_SIGMA_NM) ** 2)
    return base * (1.0 - depth * band)


def phase_reflectance(lam: np.ndarray) -> np.ndarray:
    x = (lam - WAVELENGTH_RANGE_NM[0]) / (WAVELENGTH_RANGE_NM[1] - WAVELENGTH_RANGE_NM[0])
    return 0.18 + 0.05 * x + 0.015 * x * x


def cell_bounds(size: int, n: int, i: int) -> tuple[int, int]:
    """Pixel range [start, stop) of cell i of n along an axis of `size` pixels."""
    return (i * size) // n, ((i + 1) * size) // n


def cell_fractions(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Second-phase area fraction per grid cell, row-major (length rows*cols)."""
    rows, cols = grid
    h, w = mask.shape
    out = np.empty(rows * cols, dtype=np.float64)
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        r0, r1 = cell_bounds(h, rows, r)
        c0, c1 = cell_bounds(w, cols, c)
        out[k] = mask[r0:r1, c0:c1].mean()
    return out


def render_spectra(
    fractions: np.ndarray,
    composition: float,
    rng: np.random.Generator,
    spectrum_length: int,
    slice_id: str = "1",
    matrix: np.ndarray | None = None,
) -> np.ndarray:
    """Local spectra (len(fractions), spectrum_length) float32: linear mixture of matrix and phase
    reflectance by the local second-phase fraction, times gain, plus baseline wiggle and white noise.
    ``matrix`` (one row per cell) replaces the matrix reflectance of ``composition``."""
    prof = SLICE_PROFILES[slice_id]
    lam = wavelengths(spectrum_length)
    x = (lam - lam[0]) / (lam[-1] - lam[0]) if spectrum_length > 1 else np.zeros_like(lam)
    f = np.asarray(fractions, dtype=np.float64)[:, None]
    n = f.shape[0]
    matrix = matrix_reflectance(lam, composition)[None, :] if matrix is None else matrix
    mix = (1.0 - f) * matrix + f * phase_reflectance(lam)[None, :]
    gain = 1.0 + SPECTRUM_GAIN_STD * rng.standard_normal((n, 1))
    wiggle_amp = BASELINE_WIGGLE_STD * rng.standard_normal((n, 1))
    wiggle_freq = rng.uniform(0.5, 1.5, size=(n, 1))
    wiggle_phase = rng.uniform(0.0, 2.0 * math.pi, size=(n, 1))
    wiggle = wiggle_amp * np.sin(2.0 * math.pi * wiggle_freq * x[None, :] + wiggle_phase)
    spec = mix * gain * prof["spectro_gain"] + prof["spectro_offset"] + wiggle
    spec = spec + SPECTRUM_NOISE_STD * rng.standard_normal(spec.shape)
    return spec.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# One sample
# ----------------------------------------------------------------------------------------------


def _substream(seq: np.random.SeedSequence, k: int) -> np.random.Generator:
    """k-th independent stream of a sample's SeedSequence (without mutating `seq`)."""
    return np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=tuple(seq.spawn_key) + (k,)))


def generate_sample(seq: np.random.SeedSequence, slice_id: str, image_size: int, spectrum_length: int, grid):
    """Generate one sample in memory: (latents, image uint8, spectra float32, extra info dict)."""
    latents = draw_latents(_substream(seq, 0))
    img, mask, n_grains = render_micrograph(latents.image, _substream(seq, 1), image_size, slice_id)
    fractions = cell_fractions(mask, grid)
    spectra = render_spectra(fractions, latents.composition, _substream(seq, 2), spectrum_length, slice_id)
    info = {"n_grains": n_grains, "realised_phase_fraction": float(mask.mean())}
    return latents, img, spectra, info
