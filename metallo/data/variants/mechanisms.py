"""Local mechanisms that isotropic texture statistics and band depths do not encode.

A ``mechanism`` profile gives every measurement cell k its own image property and its own spectral property and
labels the sample with the mean over cells of their standardised product (plus an optional global term), as
``local`` does for grain size x band depth. Here the image property is one that the mean grey level, the gradient
magnitude and the Laplacian of a cell do not change with, and the spectral property is a band's *position* or
*width* (its depth varies at random, as a nuisance):

Image mechanisms (``IMAGE_MECHANISMS``)
    ``direction``  elongated grains (aspect 3) whose long axis lies at angle theta_k to the frame's x axis;
                   feature sqrt(2) cos(2 theta_k) (alignment with x). Rotating a texture leaves every isotropic
                   statistic unchanged.
    ``elongation`` second-phase particles of aspect ratio a_k (1..4, random orientations) whose count and size
                   are set so that the area fraction and the total boundary length per cell do not depend on
                   a_k; feature log a_k, standardised.
    ``clustering`` non-overlapping round particles of one size and one count per cell, a share c_k (0..1) of
                   them gathered in clusters, the rest scattered; feature c_k, standardised. Each dot joins a
                   cluster with probability c_k and a scattered dot may land next to a cluster, so a cell's
                   arrangement holds c_k only in part (a reader of the exact centres: R² 0.78 on 8,000 cells).
    ``dispersion`` the same particles, exactly a share c_k of them in tight clusters and the rest evenly
                   dispersed (no two closer than ``EVEN_SPACING``); feature c_k, standardised. The arrangement
                   holds c_k (the same reader: R² 0.97), at the same count, size and area fraction.

Spectral mechanisms (``SPECTRAL_MECHANISMS``)
    ``peak_position`` an absorption band centred at 560..840 nm (width 30 nm); feature the centre.
    ``peak_width``    a band at 700 nm with a width of 12..48 nm (log-uniform); feature log width.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from metallo.data.generative import (
    REFERENCE_SIZE,
    SLICE_PROFILES,
    ImageLatents,
    apply_optics,
    cell_bounds,
    etched_grains,
    finish_micrograph,
    paint_phase,
)

IMAGE_MECHANISMS = ("direction", "elongation", "clustering", "dispersion")
SPECTRAL_MECHANISMS = ("peak_position", "peak_width")

#: Ranges of the cell latents (uniform; elongation and peak width on a log scale).
ELONGATION_RANGE = (1.0, 4.0)
PEAK_CENTRE_RANGE_NM = (560.0, 840.0)
PEAK_WIDTH_RANGE_NM = (12.0, 48.0)
PEAK_DEPTH_RANGE = (0.15, 0.35)  # nuisance: a band's depth varies at random, whatever the mechanism
PEAK_CENTRE_FIXED_NM, PEAK_WIDTH_FIXED_NM = 700.0, 30.0

#: Microstructure sizes, px at ``REFERENCE_SIZE``.
GRAIN_DIAMETER = 14.0  # direction: mean grain diameter before stretching
GRAIN_ASPECT = 3.0  # direction: length / width of the elongated grains
PARTICLE_RADIUS = 3.0  # elongation: radius of a round particle (a_k = 1)
PARTICLE_FRACTION = 0.12  # elongation / clustering / dispersion: nominal area fraction of the particles
DOT_RADIUS = 2.5  # clustering / dispersion: particle radius
CLUSTER_SPREAD = 5.0  # clustering: std of a clustered particle's offset from its cluster's centre
DOTS_PER_CLUSTER = 8  # clustering / dispersion: dots per cluster centre
TIGHT_CLUSTER_SPREAD = 3.5  # dispersion: std of a clustered particle's offset (widened on each failed try)
EVEN_SPACING = 9.0  # dispersion: least distance between centres of a dispersed particle and any other


def _uniform_z(value, lo: float, hi: float):
    """A uniform [lo, hi] variable standardised to zero mean and unit variance."""
    return (value - (lo + hi) / 2.0) / ((hi - lo) / math.sqrt(12.0))


def draw_cell_latents(rng: np.random.Generator, n_cells: int, image: str, spectral: str) -> dict[str, np.ndarray]:
    """Per-cell raw values and standardised features of both mechanisms, and the band depth nuisance."""
    u_image, u_spectral = rng.uniform(0.0, 1.0, n_cells), rng.uniform(0.0, 1.0, n_cells)
    if image == "direction":
        value = math.pi * u_image
        z_image = math.sqrt(2.0) * np.cos(2.0 * value)
    elif image == "elongation":
        lo, hi = (math.log(v) for v in ELONGATION_RANGE)
        value = np.exp(lo + (hi - lo) * u_image)
        z_image = _uniform_z(np.log(value), lo, hi)
    else:
        value = u_image
        z_image = _uniform_z(value, 0.0, 1.0)
    if spectral == "peak_position":
        lo, hi = PEAK_CENTRE_RANGE_NM
        spectral_value = lo + (hi - lo) * u_spectral
        z_spectral = _uniform_z(spectral_value, lo, hi)
    else:
        lo, hi = (math.log(v) for v in PEAK_WIDTH_RANGE_NM)
        spectral_value = np.exp(lo + (hi - lo) * u_spectral)
        z_spectral = _uniform_z(np.log(spectral_value), lo, hi)
    depth = rng.uniform(*PEAK_DEPTH_RANGE, n_cells)
    return {"image": value, "z_image": z_image, "spectral": spectral_value, "z_spectral": z_spectral, "depth": depth}


def band(lam: np.ndarray, spectral: str, value: float, depth: float) -> np.ndarray:
    """The factor (L,) a cell's absorption band multiplies the matrix reflectance by."""
    centre, width = (value, PEAK_WIDTH_FIXED_NM) if spectral == "peak_position" else (PEAK_CENTRE_FIXED_NM, value)
    return 1.0 - depth * np.exp(-0.5 * ((lam - centre) / width) ** 2)


# ----------------------------------------------------------------------------------------------
# Micrographs
# ----------------------------------------------------------------------------------------------


def _cell_boxes(frame: tuple[int, int], grid: tuple[int, int], size: int) -> list[tuple[int, int, int, int]]:
    """(r0, r1, c0, c1) of each cell on the square canvas of side ``size`` that ``frame`` is cropped from."""
    h, w = frame
    rows, cols = grid
    y0, x0 = (size - h) // 2, (size - w) // 2
    boxes = []
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        (r0, r1), (c0, c1) = cell_bounds(h, rows, r), cell_bounds(w, cols, c)
        boxes.append((y0 + r0, y0 + r1, x0 + c0, x0 + c1))
    return boxes


def _cell_index(boxes, size: int) -> np.ndarray:
    """(size, size) index of the cell each canvas pixel belongs to (pixels off the frame: the nearest cell)."""
    top, bottom = min(b[0] for b in boxes), max(b[1] for b in boxes)
    left, right = min(b[2] for b in boxes), max(b[3] for b in boxes)
    ys = np.clip(np.arange(size), top, bottom - 1)
    xs = np.clip(np.arange(size), left, right - 1)
    index = np.empty((size, size), dtype=np.int64)
    for k, (r0, r1, c0, c1) in enumerate(boxes):
        rows_in = (ys >= r0) & (ys < r1)
        cols_in = (xs >= c0) & (xs < c1)
        index[np.ix_(rows_in, cols_in)] = k
    return index


def _voronoi(points: np.ndarray, seeds: np.ndarray, metric: np.ndarray | None = None) -> np.ndarray:
    """Nearest seed of each point, distances measured after the linear map ``metric`` (2x2)."""
    if metric is not None:
        points, seeds = points @ metric.T, seeds @ metric.T
    return cKDTree(seeds).query(points, k=1)[1]


def _oriented_grains(boxes, index: np.ndarray, angles, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Grain labels (size, size): in cell k, Voronoi grains stretched by ``GRAIN_ASPECT`` along ``angles[k]``."""
    size = index.shape[0]
    labels = np.empty((size, size), dtype=np.int64)
    d = GRAIN_DIAMETER * scale
    offset = 0
    for k in range(len(boxes)):
        ys, xs = np.nonzero(index == k)
        margin = 2.0 * GRAIN_ASPECT * d
        lo = np.array([ys.min() - margin, xs.min() - margin])
        hi = np.array([ys.max() + 1 + margin, xs.max() + 1 + margin])
        n = max(2, int(round(np.prod(hi - lo) / (math.pi / 4.0 * d * d))))
        seeds = rng.uniform(lo, hi, size=(n, 2))
        cos, sin = math.cos(angles[k]), math.sin(angles[k])
        stretch = math.sqrt(GRAIN_ASPECT)
        # (y, x) -> (along, across) the grain direction; "along" distances count 1/stretch^2 as much
        metric = np.array([[sin / stretch, cos / stretch], [cos * stretch, -sin * stretch]])
        labels[ys, xs] = offset + _voronoi(np.column_stack([ys + 0.5, xs + 0.5]), seeds, metric)
        offset += n
    return labels


def _round_grains(lat: ImageLatents, rng: np.random.Generator, size: int) -> tuple[np.ndarray, int]:
    d = lat.grain_size * size / REFERENCE_SIZE
    n = max(2, int(round(size * size / (math.pi / 4.0 * d * d))))
    yy, xx = np.mgrid[0:size, 0:size]
    seeds = rng.uniform(0.0, size, size=(n, 2))
    return _voronoi(np.column_stack([yy.ravel() + 0.5, xx.ravel() + 0.5]), seeds).reshape(size, size), n


def _ellipse_perimeter(a: float, b: float) -> float:
    """Ramanujan's approximation of the perimeter of an ellipse with semi-axes a, b."""
    return math.pi * (3.0 * (a + b) - math.sqrt((3.0 * a + b) * (a + 3.0 * b)))


def _paint_ellipses(mask: np.ndarray, centres, semi_axes, angles) -> None:
    """Sets the pixels of each ellipse (centre (y, x), semi-axes (along, across), angle) in ``mask``."""
    size = mask.shape[0]
    for (cy, cx), (a, b), angle in zip(centres, semi_axes, angles):
        reach = int(math.ceil(a)) + 1
        y0, y1 = max(0, int(cy) - reach), min(size, int(cy) + reach + 1)
        x0, x1 = max(0, int(cx) - reach), min(size, int(cx) + reach + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        dy = np.arange(y0, y1)[:, None] + 0.5 - cy
        dx = np.arange(x0, x1)[None, :] + 0.5 - cx
        along = dx * math.cos(angle) + dy * math.sin(angle)
        across = -dx * math.sin(angle) + dy * math.cos(angle)
        mask[y0:y1, x0:x1] |= (along / a) ** 2 + (across / b) ** 2 <= 1.0


def _elongated_particles(boxes, aspects, rng: np.random.Generator, scale: float, size: int) -> np.ndarray:
    """Particles of aspect ``aspects[k]`` in cell k; equal area fraction and boundary length in every cell."""
    mask = np.zeros((size, size), dtype=bool)
    round_perimeter = 2.0 * math.pi
    for (r0, r1, c0, c1), aspect in zip(boxes, aspects):
        unit = _ellipse_perimeter(math.sqrt(aspect), 1.0 / math.sqrt(aspect))
        radius = PARTICLE_RADIUS * scale * unit / round_perimeter  # perimeter / area then does not depend on aspect
        n = rng.poisson(PARTICLE_FRACTION * (r1 - r0) * (c1 - c0) / (math.pi * radius * radius))
        centres = rng.uniform((r0, c0), (r1, c1), size=(n, 2))
        axes = np.tile([radius * math.sqrt(aspect), radius / math.sqrt(aspect)], (n, 1))
        _paint_ellipses(mask, centres, axes, rng.uniform(0.0, math.pi, n))
    return mask


def _dot_layout(box, scale: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Where one cell's dots may go: the bounds (lo, hi) of their centres in ``box`` (r0, r1, c0, c1), and their
    count (the nominal area fraction of round dots of radius ``DOT_RADIUS``)."""
    r0, r1, c0, c1 = box
    radius = DOT_RADIUS * scale
    lo, hi = np.array([r0 + radius, c0 + radius]), np.array([r1 - radius, c1 - radius])
    return lo, hi, int(round(PARTICLE_FRACTION * (r1 - r0) * (c1 - c0) / (math.pi * radius * radius)))


def _cluster_centres(lo, hi, dots: int, rng: np.random.Generator) -> np.ndarray:
    """One cluster centre per ``DOTS_PER_CLUSTER`` dots (at least one), uniform in [lo, hi]."""
    return rng.uniform(lo, hi, size=(max(1, round(dots / DOTS_PER_CLUSTER)), 2))


def _place_dots(
    lo,
    hi,
    parents,
    flags,
    rng: np.random.Generator,
    scale: float,
    *,
    spread: float,
    tries: int,
    grow: float = 0.0,
    even: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping dots with centres in [lo, hi], one per entry of ``flags`` (True: near one of the cluster
    centres ``parents``, normal offsets of std ``spread`` x (1 + ``grow`` x try); False: uniform, at least
    ``even`` from every dot placed). A dot that finds no place in ``tries`` tries is left out. Returns the
    centres (n, 2) and whether each joined a cluster (n,)."""
    gap = 2.0 * DOT_RADIUS * scale + max(1.5, scale)
    placed: list[np.ndarray] = []
    joined: list[bool] = []
    for clustered in flags:
        least = gap if clustered else max(gap, even)
        for attempt in range(tries):
            if clustered:
                point = parents[rng.integers(len(parents))] + rng.normal(0.0, spread * (1.0 + grow * attempt), 2)
            else:
                point = rng.uniform(lo, hi)
            inside = np.all(point >= lo) and np.all(point <= hi)
            if inside and (not placed or np.min(np.hypot(*(np.array(placed) - point).T)) >= least):
                placed.append(point)
                joined.append(bool(clustered))
                break
    return np.array(placed, dtype=float).reshape(-1, 2), np.array(joined, dtype=bool)


def clustered_dot_centres(box, share: float, rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``clustering``: the dots of one cell ``box`` (r0, r1, c0, c1), their centres (n, 2) and whether each
    joined a cluster (n,). Every cell gets the same number of non-overlapping dots; each joins a cluster with
    probability ``share`` (c_k), the rest are scattered. A dot that finds no free place in 50 tries is left out."""
    lo, hi, n = _dot_layout(box, scale)
    parents = _cluster_centres(lo, hi, n, rng)
    flags = rng.uniform(size=n) < share
    return _place_dots(lo, hi, parents, flags, rng, scale, spread=CLUSTER_SPREAD * scale, tries=50)


def dispersed_dot_centres(box, share: float, rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``dispersion``: as :func:`clustered_dot_centres`, but exactly k = round(``share`` x n) dots gather in
    tight clusters of about ``DOTS_PER_CLUSTER`` (placed first; a crowded cluster grows) and the others are
    dispersed evenly, each at least ``EVEN_SPACING`` from every other dot."""
    lo, hi, n = _dot_layout(box, scale)
    clustered = round(share * n)
    parents = _cluster_centres(lo, hi, clustered, rng)
    flags = np.arange(n) < clustered
    return _place_dots(
        lo,
        hi,
        parents,
        flags,
        rng,
        scale,
        spread=TIGHT_CLUSTER_SPREAD * scale,
        tries=200,
        grow=0.1,
        even=EVEN_SPACING * scale,
    )


#: The dot-arrangement image mechanisms and the rule that lays out one cell's dots.
DOT_PLACEMENT = {"clustering": clustered_dot_centres, "dispersion": dispersed_dot_centres}


def _dots(place, boxes, shares, rng: np.random.Generator, scale: float, size: int) -> np.ndarray:
    """Non-overlapping dots, the same number per cell, cell k's laid out by ``place`` with share ``shares[k]``."""
    mask = np.zeros((size, size), dtype=bool)
    for box, share in zip(boxes, shares):
        centres, _ = place(box, share, rng, scale)
        if len(centres):
            _paint_ellipses(mask, centres, np.full((len(centres), 2), DOT_RADIUS * scale), np.zeros(len(centres)))
    return mask


def render_mechanism_micrograph(
    image: str, values, lat: ImageLatents, rng: np.random.Generator, frame: tuple[int, int], grid
) -> tuple[np.ndarray, np.ndarray]:
    """The micrograph of a mechanism profile (uint8 RGB (h, w, 3)) and its second-phase mask, as the other
    profiles: a square canvas of the long side, slice "1" optics, centre-cropped to ``frame``."""
    h, w = frame
    size = max(h, w)
    scale = size / REFERENCE_SIZE
    boxes = _cell_boxes(frame, grid, size)
    prof = SLICE_PROFILES["1"]
    if image == "direction":
        labels = _oriented_grains(boxes, _cell_index(boxes, size), values, rng, scale)
        grey = etched_grains(labels, int(labels.max()) + 1, lat, rng)
        img, mask = finish_micrograph(grey, lat, rng, size, prof)
    else:
        labels, n_grains = _round_grains(lat, rng, size)
        grey = etched_grains(labels, n_grains, lat, rng)
        if image == "elongation":
            mask = _elongated_particles(boxes, values, rng, scale, size)
        else:
            mask = _dots(DOT_PLACEMENT[image], boxes, values, rng, scale, size)
        img = apply_optics(paint_phase(grey, mask, rng), lat, rng, prof)
    y0, x0 = (size - h) // 2, (size - w) // 2
    return img[y0 : y0 + h, x0 : x0 + w], mask[y0 : y0 + h, x0 : x0 + w]


__all__ = [
    "DOT_PLACEMENT",
    "IMAGE_MECHANISMS",
    "SPECTRAL_MECHANISMS",
    "band",
    "clustered_dot_centres",
    "dispersed_dot_centres",
    "draw_cell_latents",
    "render_mechanism_micrograph",
]
