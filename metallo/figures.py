"""Figures for people: predicted vs true, residuals, attention overlays, spectra on their grid.

All functions take arrays and a path, write one PNG, and return the path (Agg backend, no display).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from metallo.io import atomic_path  # noqa: E402

DPI = 110


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def predicted_vs_true(y_true: np.ndarray, y_pred: np.ndarray, metrics: dict, path: str | os.PathLike) -> Path:
    """Test predictions against the truth, with the identity line; R², RMSE and n in the title."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y_true, y_pred, s=14, alpha=0.75, edgecolors="none")
    lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="identity (prediction = truth)")
    ax.set(
        xlim=(lo - pad, hi + pad),
        ylim=(lo - pad, hi + pad),
        xlabel="true DOS (label units)",
        ylabel="predicted DOS (label units)",
        title=f"Test: R² {metrics['r2']:.3f}, RMSE {metrics['rmse']:.3g}, n={len(y_true)}",
    )
    ax.set_aspect("equal")
    ax.legend(loc="upper left")
    return _save(fig, path)


def residual_histogram(y_true: np.ndarray, y_pred: np.ndarray, path: str | os.PathLike) -> Path:
    """How the test residuals (predicted − true) are distributed."""
    residuals = y_pred - y_true
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.hist(residuals, bins=min(30, max(5, len(residuals) // 4)), color="tab:blue", alpha=0.8)
    ax.axvline(0, color="k", lw=1)
    ax.set(
        xlabel="predicted − true DOS (label units)",
        ylabel="test samples",
        title=f"Residuals: mean {residuals.mean():+.3g}, sd {residuals.std():.3g}",
    )
    return _save(fig, path)


def residuals_vs_true(y_true: np.ndarray, y_pred: np.ndarray, path: str | os.PathLike) -> Path:
    """Test residuals against the true DOS: a trend shows the model shrinking towards the mean."""
    residuals = y_pred - y_true
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.scatter(y_true, residuals, s=14, alpha=0.75, edgecolors="none")
    ax.axhline(0, color="k", lw=1, ls="--", label="no error")
    ax.set(
        xlabel="true DOS (label units)",
        ylabel="predicted − true DOS (label units)",
        title=f"Residuals vs true DOS (test, n={len(y_true)})",
    )
    ax.legend(loc="upper right")
    return _save(fig, path)


def _montage(n: int, columns: int):
    """A figure of ``n`` panels, ``columns`` wide (fewer when ``n`` is smaller); returns it, all its axes
    (every one with its frame off) and the ``n`` axes to draw in, in reading order."""
    columns = max(1, min(columns, n))
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    return fig, axes, axes.ravel()[:n]


def _caption(ax, sample_id: str, y_true: float, y_pred: float) -> None:
    ax.set_title(f"{sample_id}\ntrue {y_true:.3g} · pred {y_pred:.3g}", fontsize=9)


def _finish_montage(fig, axes, shown, label: str, title: str) -> None:
    """One colour bar for every panel, and the figure's title."""
    fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8, label=label)
    fig.suptitle(title, fontsize=11)


def _cell_edges(extent, grid: tuple[int, int], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions of a measurement grid's column and row boundaries; ``extent`` is normalised."""
    rows, cols = grid
    x0, y0, x1, y1 = extent
    xs = (x0 + (x1 - x0) * np.arange(cols + 1) / cols) * width
    ys = (y0 + (y1 - y0) * np.arange(rows + 1) / rows) * height
    return xs, ys


def attention_montage(
    images: np.ndarray,
    attention: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sample_ids: list[str],
    path: str | os.PathLike,
    columns: int = 4,
    model_image_size: int | None = None,
) -> Path:
    """Micrographs with MetalloNet's spatial-attention map overlaid; true/predicted DOS in each caption.

    The map is the sigmoid weight (0..1) on the ResNet trunk's last feature map (stride 32: 4×4 for a
    128-px model input, 10×10 at 300 px), drawn cell by cell (no interpolation) on one colour scale, 0 to 1,
    shared by every panel, with a colour bar.
    """
    from matplotlib.colors import Normalize

    norm = Normalize(vmin=0.0, vmax=1.0)
    fig, axes, panels = _montage(len(images), columns)
    shown = None
    for i, ax in enumerate(panels):
        height, width = images[i].shape[:2]
        ax.imshow(images[i])
        shown = ax.imshow(
            attention[i], cmap="inferno", norm=norm, alpha=0.5, extent=(0, width, height, 0), interpolation="nearest"
        )
        _caption(ax, sample_ids[i], y_true[i], y_pred[i])
    map_h, map_w = attention.shape[-2:]
    cell = (
        f"; one cell = {model_image_size / map_w:.3g} px of the {model_image_size}-px model input"
        if model_image_size
        else ""
    )
    title = f"MetalloNet spatial attention on the {map_h}×{map_w} feature map{cell}"
    _finish_montage(fig, axes, shown, "spatial attention weight (0–1)", title)
    return _save(fig, path)


def cell_contribution_montage(
    images: np.ndarray,
    contributions: np.ndarray,
    extents: list,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sample_ids: list[str],
    path: str | os.PathLike,
    columns: int = 4,
) -> Path:
    """Micrographs with each measurement cell coloured by its contribution to the prediction.

    ``contributions`` is (N, rows, cols) in label units: each cell's share of the prediction, measured against
    the rest of it (the training labels' mean plus the global part MetalloNet reads from the cells' mean
    features): prediction = training mean + global part + mean of the cells' contributions. One diverging
    colour scale, centred on zero, is shared by every panel; it spans the 98th percentile of |contribution|
    (a few extreme cells do not wash the others out; beyond it the colour saturates). The overlay is light
    enough to show the microstructure.
    """
    from matplotlib.colors import TwoSlopeNorm

    values = np.abs(np.asarray(contributions, dtype=np.float64))
    limit = float(np.percentile(values, 98)) if values.size else 0.0
    limit = limit or float(values.max(initial=0.0)) or 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    fig, axes, panels = _montage(len(images), columns)
    shown = None
    for i, ax in enumerate(panels):
        height, width = images[i].shape[:2]
        x0, y0, x1, y1 = extents[i]
        ax.imshow(images[i])
        shown = ax.imshow(
            contributions[i],
            cmap="coolwarm",
            norm=norm,
            alpha=0.35,
            interpolation="nearest",
            extent=(x0 * width, x1 * width, y1 * height, y0 * height),
        )
        xs, ys = _cell_edges(extents[i], contributions[i].shape, width, height)
        for y in ys:
            ax.plot([x0 * width, x1 * width], [y, y], color="k", lw=0.5)
        for x in xs:
            ax.plot([x, x], [y0 * height, y1 * height], color="k", lw=0.5)
        ax.set(xlim=(0, width), ylim=(height, 0))
        _caption(ax, sample_ids[i], y_true[i], y_pred[i])
    title = (
        "MetalloNet: each measured cell's contribution (red raises, blue lowers the prediction)\n"
        "prediction = training mean + global part + mean of the cells' contributions"
    )
    _finish_montage(fig, axes, shown, "cell contribution to DOS (label units; colour capped at the 98th pct)", title)
    return _save(fig, path)


def _draw_image_with_grid(ax, image: np.ndarray, grid: tuple[int, int], extent, sample_id: str) -> None:
    """The micrograph with the measurement grid outlined in white and each cell numbered (cell k = spectrum k)."""
    rows, cols = grid
    ax.imshow(image)
    height, width = image.shape[:2]
    xs, ys = _cell_edges(extent, grid, width, height)
    for r in range(rows + 1):
        ax.plot([xs[0], xs[-1]], [ys[r], ys[r]], color="w", lw=0.8)
    for c in range(cols + 1):
        ax.plot([xs[c], xs[c]], [ys[0], ys[-1]], color="w", lw=0.8)
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        ax.text(
            (xs[c] + xs[c + 1]) / 2,
            (ys[r] + ys[r + 1]) / 2,
            str(k),
            color="w",
            ha="center",
            va="center",
            fontsize=8,
            clip_on=True,
        )
    ax.set(xlim=(0, width), ylim=(height, 0))
    ax.set_title(f"{sample_id}: grid {rows}×{cols}, cell k = spectrum k", fontsize=10)
    ax.axis("off")


def _draw_spectra_in_cells(fig, area, spectra: np.ndarray, x: np.ndarray, grid: tuple[int, int], x_label: str) -> None:
    """One small plot per spectrum, laid out as its grid cell, on one shared y scale; labels on the outer edge."""
    rows, cols = grid
    inner = area.subgridspec(rows, cols, hspace=0.08, wspace=0.08)
    middle = rows // 2  # one y label for the whole grid, beside its middle row
    lo, hi = float(spectra.min()), float(spectra.max())
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        ax = fig.add_subplot(inner[r, c])
        ax.plot(x, spectra[k], lw=0.8)
        ax.set_ylim(lo, hi)
        ax.text(0.04, 0.85, str(k), transform=ax.transAxes, fontsize=7)
        ax.tick_params(labelsize=6)
        if r < rows - 1:
            ax.set_xticklabels([])
        else:
            ax.set_xlabel(x_label, fontsize=7)
        if c > 0:
            ax.set_yticklabels([])
        elif r == middle:
            ax.set_ylabel("intensity (as measured)", fontsize=7)


def spectra_on_grid(
    image: np.ndarray,
    spectra: np.ndarray,
    grid: tuple[int, int],
    sample_id: str,
    path: str | os.PathLike,
    wavelengths: tuple[float, float] | np.ndarray | None = None,
    extent: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
) -> Path:
    """One sample: its micrograph with the measurement grid, and each spectrum in its grid cell.

    ``wavelengths``: ``(first, last)`` in nm (``data.wavelengths``; the points are evenly spaced) or one
    value per point; without it the x axis is the point index. ``extent`` is where the measured field lies
    in the image, normalised (``grid_x0..grid_y1`` of the processed samples; beyond 0..1 when convert
    cropped part of the field away).
    """
    rows, cols = grid
    if wavelengths is not None and len(wavelengths) == 2 and spectra.shape[-1] != 2:
        wavelengths = np.linspace(float(wavelengths[0]), float(wavelengths[1]), spectra.shape[-1])
    x = np.arange(spectra.shape[-1]) if wavelengths is None else np.asarray(wavelengths, dtype=np.float64)
    fig = plt.figure(figsize=(4 + 2.2 * cols, 2.0 * rows))
    outer = fig.add_gridspec(1, 2, width_ratios=[4, 2.2 * cols], wspace=0.15)
    _draw_image_with_grid(fig.add_subplot(outer[0]), image, grid, extent, sample_id)
    x_label = "wavelength (nm)" if wavelengths is not None else "point index"
    _draw_spectra_in_cells(fig, outer[1], spectra, x, grid, x_label)
    fig.suptitle(f"{sample_id}: raw spectra on their grid cells (one shared y scale)", fontsize=10, y=0.995)
    fig.subplots_adjust(top=0.93, bottom=0.08)  # no blank band under the title
    return _save(fig, path)
