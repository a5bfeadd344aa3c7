"""MetalloNet's learned per-cell path (metallo/models/cell_path.py): every cell's image region and spectrum, the
locality of their contributions, the prediction as global part + mean contribution (+ classical branch), and the
image standardisation that keeps a lamp's gain and a camera's black level out of it."""

import math

import pytest
import torch

from metallo.models.cell_path import CellPatches, SpectrumShapeEncoder
from metallo.models.configuration_classical import RIDGE_ALPHAS
from metallo.models.modeling_metallonet import standardise_images
from tests.helpers.models import fit_classical_branch, make_inputs, make_model


def painted_cells(grid, height: int, width: int) -> torch.Tensor:
    """(height, width) map holding the row-major index of the grid cell each pixel lies in (grid divides the size)."""
    rows, cols = grid
    row = torch.arange(height) // (height // rows)
    col = torch.arange(width) // (width // cols)
    return (row[:, None] * cols + col[None, :]).float()


def cell_region(grid, height: int, width: int, k: int) -> tuple[slice, slice]:
    """The pixel rows and columns of cell k on an aligned geometry."""
    (rows, cols), (r, c) = grid, divmod(k, grid[1])
    ph, pw = height // rows, width // cols
    return slice(r * ph, (r + 1) * ph), slice(c * pw, (c + 1) * pw)


def sampled(patches: CellPatches, images: torch.Tensor) -> torch.Tensor:
    """``patches(images)`` forced through its grid_sample path, even on an aligned geometry."""
    patches._aligned = lambda height, width: False
    return patches(images)


# --- CellPatches ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid, height, width", [((3, 2), 48, 32), ((6, 4), 48, 48), ((2, 5), 30, 70)])
def test_reshape_path_equals_sampling_path_on_an_aligned_geometry(grid, height, width):
    images = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    aligned = CellPatches(grid, (0, 0, 1, 1))
    assert aligned._aligned(height, width)
    reshaped = aligned(images)
    assert reshaped.shape == (2, grid[0] * grid[1], 3, height // grid[0], width // grid[1])
    # bilinear sampling at the pixel centres: the pixels themselves, up to float32 rounding of the coordinates
    torch.testing.assert_close(sampled(CellPatches(grid, (0, 0, 1, 1)), images), reshaped, rtol=0, atol=1e-5)
    nudged = CellPatches(grid, (0, 0, 1, 1.0000001))  # not aligned: resampled at (almost) the pixel centres
    assert not nudged._aligned(height, width)
    torch.testing.assert_close(nudged(images), reshaped, rtol=0, atol=1e-5)


@pytest.mark.parametrize("path", ["reshape", "sampling"])
def test_each_patch_is_its_own_cell_region(path):
    grid, height, width = (3, 2), 48, 32
    patches = CellPatches(grid, (0, 0, 1, 1))
    cut = patches if path == "reshape" else (lambda images: sampled(patches, images))
    painted = cut(painted_cells(grid, height, width)[None, None])
    for k in range(6):
        torch.testing.assert_close(painted[0, k], torch.full_like(painted[0, k], k), rtol=0, atol=1e-4)
    images = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(1))
    cells = cut(images)
    for k in range(6):
        ys, xs = cell_region(grid, height, width, k)
        torch.testing.assert_close(cells[:, k], images[:, :, ys, xs], rtol=0, atol=1e-5)


def test_crop_extent_pads_with_zeros_and_keeps_each_cell_in_its_quadrant():
    """With (-0.1, -0.1, 1.1, 1.1) the measured field is larger than the image: each cell of a 2x2 grid reads
    only its own image quadrant, and zeros where it sticks out of the image."""
    patches = CellPatches((2, 2), (-0.1, -0.1, 1.1, 1.1))
    assert patches.patch_size(40, 40) == (24, 24)  # 0.6 of the image per cell, one sample per pixel
    for quadrant in range(4):
        image = torch.zeros(1, 1, 40, 40)
        r, c = divmod(quadrant, 2)
        image[..., 20 * r : 20 * r + 20, 20 * c : 20 * c + 20] = 1.0
        cells = patches(image)[0, :, 0]  # (4, 24, 24)
        for k in range(4):
            if k != quadrant:
                assert (cells[k] == 0).all(), f"cell {k} sees quadrant {quadrant}"
        own = cells[quadrant]
        assert own.min() >= 0 and own.max() <= 1
        outer_row, outer_col = (0 if r == 0 else -1), (0 if c == 0 else -1)
        assert (own[outer_row] == 0).all() and (own[:, outer_col] == 0).all()  # outside the image
        assert own[-1 - outer_row, -1 - outer_col] == 1  # the inner corner sits on a pixel centre of the quadrant


# --- locality and the prediction's parts ---------------------------------------------------------------------------


@pytest.fixture
def model():
    return make_model("metallonet", initializer_range=0.5)  # large readouts: contributions well above rounding


def test_a_cells_image_region_reaches_only_its_own_image_vector(model):
    images = standardise_images(make_inputs(model.config)["raw_pixel_values"])
    changed = images.clone()
    ys, xs = cell_region(model.config.grid, 48, 48, 9)
    changed[..., ys, xs] = torch.randn(changed[..., ys, xs].shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before, after = (model.image_encoder(model.cell_patches(x)) for x in (images, changed))
    others = torch.arange(24) != 9
    assert torch.equal(after[:, others], before[:, others])  # the CNN never sees another cell's pixels
    assert (after[:, 9] - before[:, 9]).abs().amax() > 1e-2


def test_a_cells_image_region_changes_only_its_own_contribution(model):
    """Sorting one cell's pixels (a ramp instead of noise) keeps the image's mean and std, so the per-image
    standardisation of every other cell is unchanged: only that cell's contribution (and the global part) moves."""
    inputs = make_inputs(model.config)
    ys, xs = cell_region(model.config.grid, 48, 48, 9)
    changed = inputs["raw_pixel_values"].clone()
    region = changed[..., ys, xs]
    changed[..., ys, xs] = region.flatten(2).sort(dim=-1).values.view(region.shape)
    with torch.no_grad():
        global_before, before, _ = model.forward_cells(inputs["raw_pixel_values"], inputs["spectra"])
        global_after, after, _ = model.forward_cells(changed, inputs["spectra"])
    others = torch.arange(24) != 9
    torch.testing.assert_close(after[:, others], before[:, others], rtol=1e-4, atol=1e-4)
    assert ((after[:, 9] - before[:, 9]).abs() > 1e-2).all()
    assert not torch.equal(global_after, global_before)


@pytest.mark.parametrize("cell", [0, 9, 23])
def test_a_spectrum_changes_only_its_own_cells_contribution(model, cell):
    inputs = make_inputs(model.config)
    changed = inputs["spectra"].clone()
    changed[:, cell] = torch.randn(changed[:, cell].shape, generator=torch.Generator().manual_seed(cell))
    with torch.no_grad():
        global_before, before, _ = model.forward_cells(inputs["raw_pixel_values"], inputs["spectra"])
        global_after, after, _ = model.forward_cells(inputs["raw_pixel_values"], changed)
    others = torch.arange(24) != cell
    assert torch.equal(after[:, others], before[:, others])
    assert ((after[:, cell] - before[:, cell]).abs() > 1e-3).all()
    assert not torch.equal(global_after, global_before)  # the global part reads the cells' mean vectors


def test_prediction_is_global_part_plus_mean_contribution(model):
    model.config.label_mean, model.config.label_std = 3.0, 2.5
    inputs = make_inputs(model.config)
    with torch.no_grad():
        output = model(**inputs, return_attention=True)
        global_part, contributions, _ = model.forward_cells(inputs["raw_pixel_values"], inputs["spectra"])
    assert output.attention is None and contributions.shape == (4, 24)
    torch.testing.assert_close(output.predictions, 3.0 + 2.5 * (global_part + contributions.mean(dim=1)))
    torch.testing.assert_close(output.cell_contributions, 2.5 * contributions.view(4, 6, 4))
    # in label units: prediction = label_mean + label_std * global part + mean cell contribution
    torch.testing.assert_close(output.predictions - 3.0 - 2.5 * global_part, output.cell_contributions.mean(dim=(1, 2)))


@pytest.mark.parametrize("features", ["cells", "global"])
def test_prediction_adds_the_classical_readout(features):
    model = make_model("metallonet", classical_branch=True, classical_features=features, label_mean=3.0, label_std=2.5)
    inputs = make_inputs(model.config, batch=8)
    fit_classical_branch(model, inputs)
    for layer in model.fusion.readouts:  # a learned part on top of the classical start
        torch.nn.init.normal_(layer.weight, std=0.5)
    raw_pixel_values, raw_spectra = inputs["raw_pixel_values"], inputs["raw_spectra"]
    with torch.no_grad():
        output = model(**inputs, return_attention=True)
        global_part, contributions, _ = model.forward_cells(raw_pixel_values, inputs["spectra"])
        wide = model.forward_classical_branch(raw_pixel_values, raw_spectra)
        terms = model.classical_cell_terms(raw_pixel_values, raw_spectra)
    torch.testing.assert_close(output.predictions, 3.0 + 2.5 * (global_part + contributions.mean(dim=1) + wide))
    if features == "cells":  # the branch's per-cell terms are part of every cell's contribution
        torch.testing.assert_close(output.cell_contributions, 2.5 * (contributions + terms).view(8, 6, 4))
        offset = 3.0 + 2.5 * (global_part + model.classical_head.bias)
    else:
        assert terms is None
        torch.testing.assert_close(output.cell_contributions, 2.5 * contributions.view(8, 6, 4))
        offset = 3.0 + 2.5 * (global_part + wide)
    torch.testing.assert_close(output.predictions - offset, output.cell_contributions.mean(dim=(1, 2)))


@pytest.mark.parametrize("features", ["cells", "global"])
def test_initialised_classical_branch_is_the_whole_prediction(features):
    model = make_model("metallonet", classical_branch=True, classical_features=features, label_mean=3.0, label_std=2.5)
    inputs = make_inputs(model.config, batch=8)
    assert fit_classical_branch(model, inputs) in RIDGE_ALPHAS
    for layer in model.fusion.readouts:
        assert not layer.weight.any() and not layer.bias.any()
    raw_pixel_values, raw_spectra = inputs["raw_pixel_values"], inputs["raw_spectra"]
    with torch.no_grad():
        output = model(**inputs, return_attention=True)
        wide = model.forward_classical_branch(raw_pixel_values, raw_spectra)
        terms = model.classical_cell_terms(raw_pixel_values, raw_spectra)
    assert wide.abs().amax() > 0
    torch.testing.assert_close(output.predictions, 3.0 + 2.5 * wide)
    if features == "cells":
        torch.testing.assert_close(output.cell_contributions, 2.5 * terms.view(8, 6, 4))
    else:
        assert not output.cell_contributions.any()


def test_image_path_ignores_channel_gain_and_offset(model):
    inputs = make_inputs(model.config)
    g = torch.Generator().manual_seed(3)
    gain, offset = 0.5 + torch.rand(4, 3, 1, 1, generator=g), 0.2 * torch.rand(4, 3, 1, 1, generator=g) - 0.1
    with torch.no_grad():
        expected = model(**inputs).predictions
        lit = model(**{**inputs, "raw_pixel_values": gain * inputs["raw_pixel_values"] + offset}).predictions
        gamma = model(**{**inputs, "raw_pixel_values": inputs["raw_pixel_values"] ** 2}).predictions
    torch.testing.assert_close(lit, expected, rtol=1e-4, atol=1e-4)
    assert (gamma - expected).abs().amax() > 1e-2  # a change of the structure's contrast is seen


def test_standardise_images_per_image_and_channel():
    images = torch.rand(2, 3, 20, 30, generator=torch.Generator().manual_seed(4))
    images[1, 2] = 0.7  # a flat channel stays finite (its std is clamped)
    out = standardise_images(images)
    torch.testing.assert_close(out[0].mean(dim=(1, 2)), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(out[0].std(dim=(1, 2), correction=0), torch.ones(3), rtol=0, atol=1e-4)
    assert out[1, 2].abs().amax() < 1e-3 and torch.isfinite(out).all()


# --- SpectrumShapeEncoder ------------------------------------------------------------------------------------------


def peaked(length: int, positions) -> torch.Tensor:
    """(1, len(positions), length) flat spectra, each with a one-point peak at its relative position."""
    spectra = torch.zeros(1, len(positions), length)
    for k, position in enumerate(positions):
        spectra[0, k, round(position * (length - 1))] = 5.0
    return spectra


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return SpectrumShapeEncoder([8, 16], resolution=32, out_dim=16).eval()


@pytest.mark.parametrize("length", [20, 32, 256])
def test_spectrum_encoder_sees_where_a_narrow_peak_is(encoder, length):
    """Shorter spectra are interpolated and longer ones band-averaged to 32 points: a one-point peak survives
    either way, and its position reaches the vector."""
    with torch.no_grad():
        early, late = encoder(peaked(length, [0.3, 0.7]))[0]
        flat = encoder(torch.zeros(1, 1, length))[0, 0]
    assert early.shape == (16,)
    assert (early - flat).norm() > 1e-3  # the peak is seen ...
    assert (early - late).norm() > 0.1 * (early - flat).norm()  # ... and where it is


def test_spectrum_encoder_reads_nothing_outside_its_spectrum(encoder):
    spectra = torch.randn(3, 6, 100, generator=torch.Generator().manual_seed(5))
    changed = spectra.clone()
    changed[1, 2] = torch.randn(100, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        before, after = encoder(spectra), encoder(changed)
    untouched = torch.ones(3, 6, dtype=torch.bool)
    untouched[1, 2] = False
    assert before.shape == (3, 6, 16)
    assert torch.equal(after[untouched], before[untouched])
    assert not torch.equal(after[1, 2], before[1, 2])


# --- CellContrast (self-supervised loss of the cell encoder) -------------------------------------------------------


def stripes(angle: float, size: int = 32) -> torch.Tensor:
    """(3, size, size) sinusoidal stripes whose crests run at ``angle`` (radians) to the x axis."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    across = -xx * torch.sin(torch.tensor(angle)) + yy * torch.cos(torch.tensor(angle))
    return torch.sin(2 * torch.pi * across / 6).expand(3, size, size)


def alignment(region: torch.Tensor) -> float:
    """cos 2 theta of the dominant structure direction of a (C, h, w) region (structure tensor), theta to x."""
    grey = region.mean(0)
    gy, gx = grey[1:, :-1] - grey[:-1, :-1], grey[:-1, 1:] - grey[:-1, :-1]
    jxx, jyy = (gx * gx).sum(), (gy * gy).sum()
    return float((jyy - jxx) / (jxx + jyy))  # gradients across the structure: along y when it runs along x


@pytest.mark.parametrize("angle", [0.0, 0.4, 1.2])
def test_contrast_views_keep_each_cells_structure_direction(model, angle):
    regions = torch.stack([stripes(angle), stripes(angle + 1.0)]).view(1, 2, 3, 32, 32)
    torch.manual_seed(0)
    for _ in range(8):  # crops, both flips, gain, offset and noise: alignment with the frame's axes survives
        views = model.cell_contrast.view(regions)
        assert views.shape[:3] == (1, 2, 3) and views.shape[-1] == round(32 * model.config.cell_view_crop)
        for k, theta in enumerate((angle, angle + 1.0)):
            assert alignment(views[0, k]) == pytest.approx(math.cos(2 * theta), abs=0.25)
    quarter_turn = regions[0, 0].rot90(1, dims=(-2, -1))  # why the views never rotate: the alignment flips
    assert alignment(quarter_turn) == pytest.approx(-math.cos(2 * angle), abs=0.25)


def test_contrast_halves_are_disjoint_halves_cut_across_either_axis():
    contrast = make_model("metallonet", cell_contrast_views="halves").cell_contrast
    painted = torch.arange(2 * 32 * 32).float().view(1, 2, 1, 32, 32)  # every pixel of both cells its own number
    torch.manual_seed(0)
    cuts = set()
    for _ in range(16):
        first, second = contrast.halves(painted)
        assert first.shape == second.shape and first.shape[:3] == (1, 2, 1)
        cuts.add(first.shape[-2:])
        assert sorted(first.shape[-2:]) == [15, 32]  # half a side, less one pixel on each side of the cut
        for k in range(2):
            a, b = set(first[0, k].flatten().tolist()), set(second[0, k].flatten().tolist())
            assert not a & b and a | b <= set(painted[0, k].flatten().tolist())  # disjoint parts of the same cell
    assert cuts == {(15, 32), (32, 15)}


def test_contrast_with_halves_is_a_finite_loss_that_trains_the_encoder():
    model = make_model("metallonet", cell_contrast_views="halves").train()
    inputs = make_inputs(model.config)
    torch.manual_seed(0)
    with_halves = model(**inputs).loss
    with_halves.backward()
    assert torch.isfinite(with_halves) and model.image_encoder.convs[0].weight.grad.abs().sum() > 0
    model.config.cell_contrast_weight = 0.0
    assert with_halves.item() > model(**inputs).loss.item() + 0.5  # the contrastive term is in it


def test_contrast_loss_is_added_in_training_only(model):
    inputs = make_inputs(model.config)
    torch.manual_seed(0)
    train_loss = model.train()(**inputs).loss
    torch.manual_seed(0)
    model.config.cell_contrast_weight = 0.0
    supervised = model(**inputs).loss
    assert train_loss.item() > supervised.item() + 0.5  # the contrastive term (about log(2 * batch cells) at first)
    model.config.cell_contrast_weight = 1.0
    output = model.eval()(**inputs)
    std = model.config.label_std
    assert output.loss.item() == pytest.approx((((output.predictions - inputs["labels"]) / std) ** 2).mean().item())


def test_cell_pretraining_trains_the_image_encoder_on_images_alone(model):
    inputs = make_inputs(model.config)
    model.train()
    with model.cell_pretraining():
        loss = model(**{**inputs, "labels": inputs["labels"] + 100.0}).loss
        loss.backward()
    assert not model.contrast_only
    assert model.image_encoder.convs[0].weight.grad.abs().sum() > 0
    untouched = [model.spectral_encoder, model.fusion]
    assert all(p.grad is None or p.grad.abs().sum() == 0 for part in untouched for p in part.parameters())
    torch.manual_seed(0)
    with model.cell_pretraining():
        first = model(**inputs).loss
    torch.manual_seed(0)
    with model.cell_pretraining():
        assert model(**{**inputs, "labels": inputs["labels"] * 3}).loss.item() == pytest.approx(first.item())


def test_cell_pretraining_needs_a_contrast():
    model = make_model("metallonet", cell_contrast_weight=0.0)
    assert model.cell_contrast is None and not model.pretrains_cells
    with pytest.raises(ValueError, match="no cell contrast"), model.cell_pretraining():
        pass
