"""Figures a scientist trusts (issue 15, goal 5): shared scales, colour bars, labelled axes, .3g captions."""

from __future__ import annotations

import numpy as np
import pytest

from metallo import figures


@pytest.fixture
def captured(monkeypatch):
    """Keep the figures instead of writing PNGs: ``figures._save`` returns the Figure."""
    monkeypatch.setattr(figures, "_save", lambda fig, path: fig)


def images(n: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_attention_maps_share_one_0_to_1_scale_with_a_colour_bar(captured):
    maps = np.stack([np.full((4, 4), 0.53), np.linspace(0.2, 0.99, 16).reshape(4, 4)])
    fig = figures.attention_montage(
        images(2),
        maps,
        np.array([0.007, 0.039]),
        np.array([0.0123, 0.0351]),
        ["a", "b"],
        "unused.png",
        model_image_size=128,
    )
    overlays = [ax.images[1] for ax in fig.axes if len(ax.images) == 2]
    assert len(overlays) == 2
    assert {(im.norm.vmin, im.norm.vmax) for im in overlays} == {(0.0, 1.0)}  # one scale: 0.53 is not "black"
    assert all(im.get_interpolation() == "nearest" for im in overlays)
    colour_bars = [ax for ax in fig.axes if ax.get_ylabel() == "spatial attention weight (0–1)"]
    assert len(colour_bars) == 1
    title = fig._suptitle.get_text()
    assert "4×4 feature map" in title and "32 px of the 128-px model input" in title
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "a\ntrue 0.007 · pred 0.0123" in titles and "b\ntrue 0.039 · pred 0.0351" in titles  # .3g, not 0.01


def test_cell_montage_captions_fit_small_labels(captured):
    contributions = np.random.default_rng(1).normal(0, 0.01, (2, 3, 2))
    fig = figures.cell_contribution_montage(
        images(2),
        contributions,
        [(0, 0, 1, 1)] * 2,
        np.array([0.007, 0.039]),
        np.array([0.0123, 0.0351]),
        ["a", "b"],
        "unused.png",
    )
    assert "a\ntrue 0.007 · pred 0.0123" in [ax.get_title() for ax in fig.axes]
    assert any("label units" in ax.get_ylabel() for ax in fig.axes)  # the shared colour bar


@pytest.mark.parametrize(
    "wavelengths,label,first,last",
    [((400.0, 1000.0), "wavelength (nm)", 400.0, 1000.0), (None, "point index", 0.0, 19.0)],
)
def test_spectra_are_drawn_against_wavelength_when_known(captured, wavelengths, label, first, last):
    spectra = np.random.default_rng(2).random((6, 20))
    fig = figures.spectra_on_grid(images(1)[0], spectra, (3, 2), "s1", "unused.png", wavelengths=wavelengths)
    panels = [ax for ax in fig.axes if ax.lines and len(ax.lines[0].get_xdata()) == 20]
    assert len(panels) == 6
    x = panels[0].lines[0].get_xdata()
    assert x[0] == pytest.approx(first) and x[-1] == pytest.approx(last)
    assert {ax.get_xlabel() for ax in panels} == {label, ""}  # bottom row labelled
    assert {ax.get_ylabel() for ax in panels} == {"intensity (as measured)", ""}  # first column labelled


def test_result_figures_label_both_axes_with_units(captured):
    y_true, y_pred = np.array([0.007, 0.02, 0.039]), np.array([0.008, 0.018, 0.035])
    metrics = {"r2": 0.9, "rmse": 0.00254}
    for fig in (
        figures.predicted_vs_true(y_true, y_pred, metrics, "x.png"),
        figures.residuals_vs_true(y_true, y_pred, "x.png"),
        figures.residual_histogram(y_true, y_pred, "x.png"),
    ):
        ax = fig.axes[0]
        assert ax.get_xlabel() and ax.get_ylabel()
        assert "label units" in ax.get_xlabel()
    assert "RMSE 0.00254" in figures.predicted_vs_true(y_true, y_pred, metrics, "x.png").axes[0].get_title()


def test_wavelength_range_param():
    from metallo.errors import MetalloError
    from metallo.layout import wavelength_range

    assert wavelength_range({"data": {"wavelengths": [400, 1000]}}) == (400.0, 1000.0)
    assert wavelength_range({"data": {"wavelengths": []}}) is None and wavelength_range({"data": {}}) is None
    for bad in ([1000, 400], [400], "400-1000"):
        with pytest.raises(MetalloError, match="data.wavelengths"):
            wavelength_range({"data": {"wavelengths": bad}})
