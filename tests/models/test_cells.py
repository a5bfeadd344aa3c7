"""Per-cell statistics of the measurement grid (metallo/models/cells.py): geometry, invariances, and the closed-form
per-cell bilinear branch recovering a label that only local image x spectrum correspondence carries."""

import numpy as np
import pytest
import torch

from metallo.models.cells import CellInteractionFeatures, texture_maps
from metallo.models.modeling_classical import ClassicalFeatures, fit_ridge

GRID = (3, 2)
SIZE = 48
LENGTH = 40


def textured_cells(contrast: torch.Tensor, period: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, S) per-cell stripe contrast and period -> (B, 3, SIZE, SIZE) intensities, cell k row-major on GRID."""
    rows, cols = GRID
    batch = contrast.shape[0]
    image = torch.full((batch, SIZE, SIZE), 0.5)
    x = torch.arange(SIZE, dtype=torch.float32)
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        ys, xs = slice(r * SIZE // rows, (r + 1) * SIZE // rows), slice(c * SIZE // cols, (c + 1) * SIZE // cols)
        stripes = torch.sin(2 * torch.pi * x[None, xs] / period[:, k, None])  # (B, width)
        image[:, ys, xs] += (contrast[:, k, None] * stripes)[:, None, :]
    image += 0.01 * torch.randn(image.shape, generator=generator)
    return image.clamp(0, 1)[:, None].expand(-1, 3, -1, -1).contiguous()


def dipped_spectra(depth: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, S) absorption-dip depths -> (B, S, LENGTH) positive spectra with the dip in the middle."""
    x = torch.linspace(0, 1, LENGTH)
    dip = torch.exp(-0.5 * ((x - 0.5) / 0.08) ** 2)
    spectra = 1.0 + 0.3 * x - depth[..., None] * dip
    return spectra + 0.005 * torch.randn(spectra.shape, generator=generator)


def local_correspondence_set(n: int, seed: int):
    """Label = mean over cells of (stripe period z-score) x (dip depth z-score): only per-cell pairs carry it."""
    g = torch.Generator().manual_seed(seed)
    cells = GRID[0] * GRID[1]
    period = 3.0 + 9.0 * torch.rand(n, cells, generator=g)
    depth = 0.1 + 0.4 * torch.rand(n, cells, generator=g)
    z_period, z_depth = (period - 7.5) / (9.0 / 12**0.5), (depth - 0.3) / (0.4 / 12**0.5)
    label = (z_period * z_depth).mean(dim=1)
    return textured_cells(torch.full((n, cells), 0.3), period, g), dipped_spectra(depth, g), label.numpy()


def r2(prediction: np.ndarray, truth: np.ndarray) -> float:
    return 1.0 - float(((prediction - truth) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())


def fitted(features, train_images, train_spectra, labels):
    fit = fit_ridge(
        features.prepare(features.extract_raw(train_images, train_spectra).double().numpy()),
        labels,
        [10.0**k for k in range(-4, 4)],
    )
    features.set_statistics(fit["mean"], fit["std"])
    return lambda images, spectra: (features(images, spectra).double().numpy() @ fit["coef"]) + fit["intercept"]


def test_texture_maps_ignore_illumination_gain():
    g = torch.Generator().manual_seed(0)
    image = 0.2 + 0.6 * torch.rand(2, 3, 32, 32, generator=g)
    assert torch.allclose(texture_maps(image, [1, 2, 4]), texture_maps(0.5 * image, [1, 2, 4]), atol=1e-5)


def test_cell_statistics_describe_the_cell_they_were_measured_over():
    """Only cell 3 is striped: its gradient statistic stands out, and after a horizontal flip of image and grid the
    stripes move to the mirrored cell 2 — the statistics follow the pixels, not the index."""
    contrast = torch.zeros(1, 6)
    contrast[0, 3] = 0.4
    image = textured_cells(contrast, torch.full((1, 6), 4.0), torch.Generator().manual_seed(0))
    features = CellInteractionFeatures(GRID, (0, 0, 1, 1), n_bands=4)
    spectra = torch.ones(1, 6, LENGTH)
    gradient = features.extract_cells(image, spectra)[0, :, 2]  # first map after grey and grey²: |gradient|, scale 1
    assert int(gradient.argmax()) == 3 and float(gradient[3] - gradient.sort().values[-2]) > 2.0
    flipped = features.extract_cells(image.flip(-1), spectra)[0, :, 2]
    assert int(flipped.argmax()) == 2


def test_cell_terms_split_the_branch_readout_exactly():
    images, spectra, labels = local_correspondence_set(40, seed=1)
    features = CellInteractionFeatures(GRID, (0, 0, 1, 1), n_bands=8)
    fitted(features, images, spectra, labels)
    head = torch.nn.Linear(features.n_features, 1)
    whole = head(features(images, spectra)).squeeze(-1)
    cells = features.cell_terms(images, spectra, head)
    assert cells.shape == (40, 6)
    torch.testing.assert_close(cells.mean(dim=1) + head.bias, whole, atol=1e-4, rtol=1e-4)


def test_cell_branch_learns_local_correspondence_that_global_features_cannot():
    images, spectra, labels = local_correspondence_set(240, seed=2)
    train, test = slice(0, 180), slice(180, None)
    cells = fitted(CellInteractionFeatures(GRID, (0, 0, 1, 1), n_bands=8), images[train], spectra[train], labels[train])
    global_features = ClassicalFeatures(
        ["image", "spectra"], n_bands=8, histogram_bins=8, gradient_scales=[1, 2, 4], dark_threshold=0.5
    )
    whole = fitted(global_features, images[train], spectra[train], labels[train])
    assert r2(cells(images[test], spectra[test]), labels[test]) > 0.8
    assert r2(whole(images[test], spectra[test]), labels[test]) < 0.4


def test_cell_statistics_refuse_non_square_images():
    features = CellInteractionFeatures(GRID, (0, 0, 1, 1), n_bands=4)
    with pytest.raises(ValueError, match="square"):
        features.extract_cells(torch.rand(1, 3, 32, 48), torch.ones(1, 6, LENGTH))
