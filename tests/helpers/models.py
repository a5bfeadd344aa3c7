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
    """Save ``model`` and ``processor`` (default: :func:`tiny_model`, :func:`tiny_processor`) into ``out``."""
    (model if model is not None else tiny_model()).save_pretrained(out)
    (processor if processor is not None else tiny_processor()).save_pretrained(out)
    return out
