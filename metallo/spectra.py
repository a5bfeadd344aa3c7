"""Spectra maths shared by the split statistics, the processor and the models.

The functions take NumPy arrays or torch tensors alike (the same operations in the same order, so each
library computes what it computed before); this module imports neither.
"""

from __future__ import annotations

#: Smallest scale SNV divides by: an all-constant spectrum stays finite (zeros).
SNV_EPS = 1e-12


def snv(spectra, eps: float = SNV_EPS):
    """Standard normal variate: each spectrum (last axis) centred and scaled by its own (population) std."""
    centred = spectra - spectra.mean(-1, keepdims=True)
    return centred / ((centred * centred).mean(-1, keepdims=True) ** 0.5).clip(min=eps)
