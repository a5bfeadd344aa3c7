"""metallo.spectra: one SNV for NumPy (split statistics) and torch (processor, models)."""

from __future__ import annotations

import numpy as np
import torch

from metallo.spectra import snv


def test_snv_centres_and_scales_each_spectrum_in_numpy_and_torch_alike():
    values = np.random.default_rng(0).normal(3.0, 2.0, size=(5, 24, 64))
    out = snv(values)
    assert np.allclose(out.mean(-1), 0.0) and np.allclose(out.std(-1), 1.0)
    assert np.allclose(snv(torch.from_numpy(values)).numpy(), out, rtol=0, atol=1e-12)


def test_snv_of_a_constant_spectrum_is_zero_not_nan():
    assert np.array_equal(snv(np.full((1, 8), 7.0)), np.zeros((1, 8)))
    assert torch.equal(snv(torch.full((1, 8), 7.0)), torch.zeros(1, 8))
