"""The foreign-instrument profiles (``PROFILES``), their sizes at a given scale and their seeds.

The exact ``data:``/``split:`` values are in each folder's ``dataset.json``.

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
``local_direction``, ``local_elongation``, ``local_clustering``, ``local_dispersion``, ``local_specimens``
    Local mechanisms that no texture statistic encodes (:mod:`metallo.data.variants.mechanisms`): per cell,
    the direction of elongated grains, the elongation of particles at equal area and boundary length, the
    clustering of equal particles, or their dispersion (a share in tight clusters, the rest evenly spaced),
    times the position or width of an absorption band in that cell's
    spectrum (its depth varies at random). ``dos = intercept + scale * (mean_k(z_image,k * z_spectral,k)
    [+ z_phase / sqrt(n_cells)] + noise)``. Frames, grids, spectrum lengths, file formats and label scales
    differ; ``local_specimens`` has three training specimens and a test specimen with instrument shifts.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace

import numpy as np

MIN_LONG_SIDE = 64
IMAGE_FORMATS = ("png_rgb8", "png_gray12", "png_palette", "tiff_rgb8", "tiff_gray8", "tiff_gray16")
SPECTRA_FORMATS = ("npy_reflectance", "npy_float32_counts", "npy_uint16_counts", "csv_int_counts")


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
    mechanism: tuple = ()  # (image, spectral) mechanism of a per-cell profile (``mechanisms``); () = grain size x depth

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

#: The local-mechanism profiles (``mechanisms``): what a cell's image and spectrum carry is not a texture
#: statistic or a band depth; frames, grids, spectrum lengths and files differ from profile to profile.
_MECHANISM = replace(_LOCAL, per_cell=True, label_intercept=0.0, label_scale=1.0)
MECHANISM_PROFILES: dict[str, Profile] = {
    "local_direction": replace(
        _MECHANISM,
        name="local_direction",
        mimics="per-cell direction of elongated grains (image) x position of an absorption band (its spectrum); "
        "square 8-bit RGB frames, 6x4 grid, 1,600-point reflectance",
        mechanism=("direction", "peak_position"),
    ),
    "local_elongation": replace(
        _MECHANISM,
        name="local_elongation",
        mimics="per-cell elongation of second-phase particles at equal area and boundary length (image) x width "
        "of an absorption band (its spectrum); 12-bit grey 320x240 frames, 5x5 grid, 1,024-point raw counts",
        mechanism=("elongation", "peak_width"),
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
    "local_clustering": replace(
        _MECHANISM,
        name="local_clustering",
        mimics="per-cell clustering of equal, non-overlapping particles (image) x position of an absorption band "
        "(its spectrum); portrait 240x320 RGB frames, 4x4 grid, 512-point integer CSV counts, label near 50",
        mechanism=("clustering", "peak_position"),
        frame=(320, 240),
        grid=(4, 4),
        spectrum_length=512,
        spectra_format="csv_int_counts",
        full_scale=12000.0,
        dark=100.0,
        read_noise=4.0,
        response=(600.0, 250.0),
        label_intercept=50.0,
        label_scale=10.0,
    ),
    "local_dispersion": replace(
        _MECHANISM,
        name="local_dispersion",
        mimics="per-cell dispersion of equal particles, a share in tight clusters and the rest evenly spaced "
        "(image) x width of an absorption band (its spectrum); landscape 300x400 8-bit grey TIFF frames, 3x5 "
        "grid, 700-point float32 raw counts, label near 20",
        mechanism=("dispersion", "peak_width"),
        frame=(300, 400),
        grid=(3, 5),
        spectrum_length=700,
        image_formats=("tiff_gray8",),
        spectra_format="npy_float32_counts",
        full_scale=20000.0,
        dark=150.0,
        read_noise=5.0,
        response=(680.0, 200.0),
        label_intercept=20.0,
        label_scale=4.0,
    ),
    "local_specimens": replace(
        _MECHANISM,
        name="local_specimens",
        mimics="four specimens: per-cell grain direction x band width plus a global second-phase term; square "
        "12-bit grey frames (a non-square frame resized to the stored square would make direction visible to "
        "texture statistics), a 3x6 grid of tall cells, 800-point uint16 counts; three training specimens with "
        "mild instrument shifts, a fourth for test",
        mechanism=("direction", "peak_width"),
        global_weight=1.0,
        counts={"A": 150, "B": 150, "C": 150, "D": 120},
        train_slices=("A", "B", "C"),
        test_slices=("D",),
        frame=(320, 320),
        grid=(3, 6),
        spectrum_length=800,
        image_formats=("png_gray12",),
        spectra_format="npy_uint16_counts",
        full_scale=30000.0,
        dark=300.0,
        read_noise=6.0,
        response=(700.0, 220.0),
        shifts={
            "B": SliceShift(image_gain=0.95, spectro_gain=1.05),
            "C": SliceShift(image_gain=1.05, spectro_gain=0.95, dark_add=50.0),
            "D": SliceShift(image_gain=0.85, spectro_gain=1.2, dark_add=100.0),
        },
    ),
}

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
    **MECHANISM_PROFILES,
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


def profile_seq(profile: Profile, seed: int) -> np.random.SeedSequence:
    """The root of the profile's samples: sample i uses its i-th child."""
    return np.random.SeedSequence([int(seed), zlib.crc32(profile.name.encode())])


def sample_seeds(profile: str, seed: int = 0, scale: float = 1.0) -> list[tuple[str, np.random.SeedSequence]]:
    """(slice id, SeedSequence) of every sample of ``make_variant(..., profile, seed, scale)``, in order.
    With :func:`render_sample` this re-renders any sample in memory (e.g. under another slice's shift)."""
    p = PROFILES[profile]
    counts = scaled_counts(p, scale)
    slices = [sid for sid in p.counts for _ in range(counts[sid])]
    return list(zip(slices, profile_seq(p, seed).spawn(len(slices))))
