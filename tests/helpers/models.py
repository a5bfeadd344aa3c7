"""Tiny untrained models and processors, saved the way the train stage saves them."""

from __future__ import annotations

from pathlib import Path


def tiny_model(name: str = "metallonet", *, seed: int = 0, **overrides):
    """An untrained ``name`` model on the tiny data shape (24 spectra × 64 points on a 6×4 grid, 64 px)."""
    import torch

    from metallo.models import create_model

    shape = dict(n_spectra=24, spectrum_length=64, grid=[6, 4], image_size=64, hidden_dim=16)
    torch.manual_seed(seed)
    return create_model(name, **{**shape, "label_mean": 3.0, "label_std": 1.0, **overrides})


def tiny_processor(*, spectrum_length: int = 64, image_size: int = 64, **overrides):
    """A processor with fixed statistics for :func:`tiny_model`'s shape (resize/crop 72/64 unless overridden)."""
    from metallo.processing import MetalloProcessor

    settings = dict(
        image_mean=[0.5] * 3,
        image_std=[0.25] * 3,
        spectra_mean=[0.0] * spectrum_length,
        spectra_std=[1.0] * spectrum_length,
        image_size=image_size,
        resize=72,
        crop=64,
    )
    return MetalloProcessor(**{**settings, **overrides})


def save_tiny_model(out: Path, model=None, processor=None) -> Path:
    """Save ``model`` and ``processor`` (default: :func:`tiny_model`, :func:`tiny_processor`) into ``out``.

    As the train stage does, the saved processor passes raw copies (``raw_pixel_values``, ``raw_spectra``) when
    the model reads them (``config.raw_copies``: MetalloNet reads its cells from the stored-resolution image).
    """
    from dataclasses import replace

    model = model if model is not None else tiny_model()
    processor = processor if processor is not None else tiny_processor()
    if model.config.raw_copies and not processor.raw_copies:
        processor = replace(processor, raw_copies=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


#: The model tests' shape: a 6×4 grid of 128-point spectra, a 32 px model image (``pixel_values``) and narrow
#: networks. Fields a model does not have are dropped by :func:`tiny_overrides`.
TINY = dict(
    image_size=32,
    spectrum_length=128,
    hidden_dim=16,
    spectral_channels=[8, 16],
    cell_channels=[8, 16],
    spectral_resolution=32,
)
#: Side of the stored image (``raw_pixel_values``) the tests give MetalloNet: the 6×4 grid's cells are 8×12 px.
STORED_SIZE = 48


def tiny_overrides(name: str, **overrides) -> dict:
    """:data:`TINY` plus ``overrides``, restricted to the config fields model ``name`` has."""
    from metallo.models import config_fields

    fields = config_fields(name)
    return {key: value for key, value in {**TINY, **overrides}.items() if key in fields}


def make_model(name: str, *, seed: int = 0, **overrides):
    """An untrained ``name`` model on the :data:`TINY` shape, in eval mode (call ``.train()`` to train it)."""
    import torch

    from metallo.models import create_model

    torch.manual_seed(seed)
    return create_model(name, **tiny_overrides(name, **overrides)).eval()


def make_inputs(config, batch: int = 4, *, seed: int = 1, stored_size=STORED_SIZE) -> dict:
    """Every input ``config``'s model can read, as a processor with ``raw_copies=config.raw_copies`` returns them.

    ``pixel_values`` (normalised, ``config.image_size``), ``spectra`` (normalised) and ``labels`` (label units,
    around 10); with ``config.raw_copies`` also ``raw_pixel_values`` (intensities in [0, 1] at ``stored_size``, an
    int or ``(height, width)``) and ``raw_spectra`` (positive, as measured).
    """
    import torch

    height, width = (stored_size, stored_size) if isinstance(stored_size, int) else stored_size
    g = torch.Generator().manual_seed(seed)
    spectra_shape = (batch, config.n_spectra, config.spectrum_length)
    inputs = {
        "pixel_values": torch.randn(batch, 3, config.image_size, config.image_size, generator=g),
        "spectra": torch.randn(*spectra_shape, generator=g),
        "labels": 10.0 + 3.0 * torch.randn(batch, generator=g),
    }
    if config.raw_copies:
        inputs["raw_pixel_values"] = torch.rand(batch, 3, height, width, generator=g)
        inputs["raw_spectra"] = 1.0 + 0.2 * torch.rand(*spectra_shape, generator=g)
    return inputs


def without(inputs: dict, *names: str) -> dict:
    """``inputs`` less the entries ``names``."""
    return {key: value for key, value in inputs.items() if key not in names}


def fit_classical_branch(model, inputs: dict, seed: int = 0) -> float:
    """A quick ridge fit of a MetalloNet's classical branch on ``inputs`` (from :func:`make_inputs`) against random
    standardised targets, as the train stage's start; zeroes the learned readouts. Returns the ridge penalty."""
    import numpy as np

    branch = model.classical_branch
    raw = branch.extract_raw(inputs["raw_pixel_values"], inputs["raw_spectra"]).double().numpy()
    targets = np.random.default_rng(seed).normal(size=raw.shape[0])
    return model.initialise_classical_branch(branch.prepare(raw), targets)
