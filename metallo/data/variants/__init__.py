"""Foreign-instrument variants of the demo generative model (test data from instruments Metallo never saw).

The demo set (:mod:`metallo.data.synthesize`) comes from one idealised instrument: 8-bit RGB PNG
micrographs of 300 x 300 px, float reflectance spectra, a label near 2. Real laboratories differ.
This module keeps the demo's *latent model* (``draw_latents``, ``render_micrograph``,
``render_spectra``, ``cell_fractions``, ``dos_from_latents``: the same microstructure drives image,
spectra and label) and passes its output through the transforms of another instrument: a camera
with another frame, bit depth and file format; a spectrometer that reports raw counts with a dark
offset and its own spectral response; another label unit; and specimen-to-specimen shifts that are
present only on the test slice. One profile (``local``) changes the latent model itself.

Profiles (``PROFILES``): ``camera16``, ``specimens3``, ``tiffcsv``, ``local``, ``local_mixed`` and
``local_grid5``, each described in :mod:`metallo.data.variants.profiles`.

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

Modules: ``profiles`` (the profiles table, sizes at a scale, seeds), ``render`` (one sample in
memory), ``write`` (the files of a folder, :func:`make_variant`), ``cli`` (the command line).
"""

from metallo.data.variants.cli import _main  # noqa: F401  (the command line, as before the split)
from metallo.data.variants.profiles import (  # noqa: F401  (re-exported)
    IMAGE_FORMATS,
    MIN_LONG_SIDE,
    PROFILES,
    SPECTRA_FORMATS,
    Profile,
    SliceShift,
    sample_seeds,
    scaled_counts,
    scaled_frame,
)
from metallo.data.variants.render import (  # noqa: F401  (re-exported)
    DEMO_DOS_STD,
    LOCAL_GRAIN_RANGE,
    LOCAL_LABEL_NOISE_STD,
    LOCAL_LOG_GRAIN_MOMENTS,
    render_sample,
)
from metallo.data.variants.write import DATASET_FILE, LUMA, make_variant  # noqa: F401  (re-exported)

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
