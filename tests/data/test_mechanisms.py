"""The local-mechanism profiles: the label is the mean of per-cell products, and the image property is one that
the hand-made per-cell texture statistics (grey level, gradient magnitude, Laplacian) do not encode, while a
direct measurement of it does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metallo.data import variants as V
from metallo.data.variants.mechanisms import (
    DOT_RADIUS,
    EVEN_SPACING,
    IMAGE_MECHANISMS,
    PARTICLE_FRACTION,
    SPECTRAL_MECHANISMS,
    band,
    clustered_dot_centres,
    dispersed_dot_centres,
    draw_cell_latents,
)
from metallo.data.variants.profiles import MECHANISM_PROFILES
from metallo.models.cells import CellInteractionFeatures

SAMPLES = 8  # full-size frames: the mechanisms live at the stored resolution


def _render(name: str, count: int = SAMPLES) -> list[dict]:
    profile = V.PROFILES[name]
    return [V.render_sample(name, seq, sid, profile.frame) for sid, seq in V.sample_seeds(name, 0, 1.0)[:count]]


def _cell_values(samples: list[dict], key: str, n: int) -> np.ndarray:
    return np.array([[s["latents"][f"{key}_{k:02d}"] for k in range(n)] for s in samples])


@pytest.fixture(scope="module", params=list(MECHANISM_PROFILES))
def rendered(request):
    return request.param, _render(request.param)


def test_label_is_the_mean_of_per_cell_products(rendered):
    name, samples = rendered
    profile = V.PROFILES[name]
    z_image = _cell_values(samples, "z_image", profile.n_spectra)
    z_spectral = _cell_values(samples, "z_spectral", profile.n_spectra)
    local = (z_image * z_spectral).mean(axis=1)
    np.testing.assert_allclose([s["latents"]["local_term"] for s in samples], local)
    expected = profile.label_intercept + profile.label_scale * (
        local
        + profile.global_weight * np.array([s["latents"]["z_phase"] for s in samples]) / np.sqrt(profile.n_spectra)
        + np.array([s["latents"]["label_noise"] for s in samples])
    )
    np.testing.assert_allclose([s["dos"] for s in samples], expected)
    assert np.asarray(samples[0]["spectra"]).shape == (profile.n_spectra, profile.spectrum_length)
    assert samples[0]["image8"].shape[:2] == profile.frame


def _texture_and_truth(name: str, samples: list[dict], key: str = "z_image") -> tuple[np.ndarray, np.ndarray]:
    """The hand-made branch's per-cell texture statistics at the stored 300 px, and each cell's z_image."""
    profile = V.PROFILES[name]
    branch = CellInteractionFeatures(profile.grid, (0, 0, 1, 1), 16)
    rows = []
    for s in samples:
        image = torch.from_numpy(s["image8"]).permute(2, 0, 1)[None].float() / 255
        image = torch.nn.functional.interpolate(image, size=(300, 300), mode="bilinear", antialias=True)
        spectra = torch.from_numpy(np.asarray(s["spectra"], dtype=np.float32))[None]
        rows.append(branch.extract_cells(image, spectra)[0, :, : branch.n_texture].numpy())
    return np.concatenate(rows), _cell_values(samples, key, profile.n_spectra).ravel()


def test_texture_statistics_do_not_see_the_image_mechanism(rendered):
    name, samples = rendered
    texture, z_image = _texture_and_truth(name, samples)
    correlations = [abs(np.corrcoef(column, z_image)[0, 1]) for column in texture.T]
    assert max(correlations) < 0.3, f"{name}: a texture statistic tracks the mechanism (|r| {max(correlations):.2f})"


def test_texture_statistics_do_see_the_local_profiles_grain_size():  # the contrast: what they were made for
    texture, z_image = _texture_and_truth("local", _render("local", 3), key="z_tex")
    assert max(abs(np.corrcoef(column, z_image)[0, 1]) for column in texture.T) > 0.6


def test_direction_is_visible_to_a_direction_measurement():
    samples = _render("local_direction", 3)
    profile = V.PROFILES["local_direction"]
    (rows, cols), (h, w) = profile.grid, profile.frame
    measured = []
    for s in samples:
        grey = s["image8"].astype(float).mean(axis=2)
        gy, gx = np.gradient(grey)
        for k in range(rows * cols):
            r, c = divmod(k, cols)
            box = (slice(r * h // rows, (r + 1) * h // rows), slice(c * w // cols, (c + 1) * w // cols))
            jxx, jyy = (gx[box] ** 2).mean(), (gy[box] ** 2).mean()
            measured.append((jyy - jxx) / (jxx + jyy))  # grains along x have edges along x: gradients along y
    z_image = _cell_values(samples, "z_image", profile.n_spectra).ravel()
    assert np.corrcoef(measured, z_image)[0, 1] > 0.7


@pytest.mark.parametrize("image", IMAGE_MECHANISMS)
@pytest.mark.parametrize("spectral", SPECTRAL_MECHANISMS)
def test_cell_features_are_standardised(image, spectral):
    cells = draw_cell_latents(np.random.default_rng(0), 20000, image, spectral)
    for key in ("z_image", "z_spectral"):
        assert abs(cells[key].mean()) < 0.05 and abs(cells[key].std() - 1.0) < 0.05


def test_band_moves_with_position_and_widens_with_width():
    lam = np.linspace(400, 1000, 601)
    assert lam[np.argmin(band(lam, "peak_position", 600.0, 0.3))] == 600.0
    assert lam[np.argmin(band(lam, "peak_position", 800.0, 0.3))] == 800.0
    narrow, wide = band(lam, "peak_width", 12.0, 0.3), band(lam, "peak_width", 48.0, 0.3)
    assert narrow.min() == pytest.approx(wide.min()) and (1 - wide).sum() > 3 * (1 - narrow).sum()


def test_clustered_dots_are_disjoint_and_gather_with_the_share():
    rng = np.random.default_rng(0)
    neighbours = {}
    for share in (0.0, 1.0):
        counts = []
        for _ in range(5):
            centres, joined = clustered_dot_centres((0, 80, 0, 60), share, rng, scale=1.0)
            assert len(centres) == len(joined) > 20 and joined.all() == bool(share) and joined.any() == bool(share)
            distances = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1)) + np.eye(len(centres)) * 1e9
            assert distances.min() >= 2 * DOT_RADIUS  # particles never overlap
            counts.append((distances < 12).sum(1).mean())  # other dots within 12 px
        neighbours[share] = np.mean(counts)
    assert neighbours[1.0] > 1.4 * neighbours[0.0]


def _neighbour_distances(centres: np.ndarray) -> np.ndarray:
    return np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1)) + np.eye(len(centres)) * 1e9


@pytest.mark.parametrize("share", [0.0, 0.3, 0.7, 1.0])
def test_dispersed_dots_keep_count_and_put_exactly_the_share_in_clusters(share):
    rng = np.random.default_rng(1)
    for _ in range(3):
        centres, joined = dispersed_dot_centres((0, 80, 0, 60), share, rng, scale=1.0)
        n = len(joined)
        assert n == round(PARTICLE_FRACTION * 80 * 60 / (np.pi * DOT_RADIUS**2))  # one count in every cell
        assert joined.sum() == round(share * n)  # and exactly the share in clusters
        distances = _neighbour_distances(centres)
        assert distances.min() >= 2 * DOT_RADIUS  # particles never overlap
        assert (distances[~joined].min(initial=np.inf)) >= EVEN_SPACING  # dispersed ones keep their spacing


def test_dispersed_dots_show_their_share_in_the_arrangement():
    """The dots with a neighbour closer than the even spacing are the clustered ones (a dispersed dot never has
    one), so their fraction follows the share closely: the arrangement holds c_k."""
    rng = np.random.default_rng(2)
    shares = np.linspace(0.0, 1.0, 11)
    crowded = []
    for share in shares:
        centres, _ = dispersed_dot_centres((0, 80, 0, 60), share, rng, scale=1.0)
        crowded.append((_neighbour_distances(centres) < EVEN_SPACING).any(axis=1).mean())
    assert crowded[0] == 0.0 and np.corrcoef(shares, crowded)[0, 1] > 0.98
