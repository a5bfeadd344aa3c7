"""The measurement grid on the image: which pixels each spectrum was measured over, and per-cell statistics.

Spectrum k of a sample was measured over grid cell (k // cols, k % cols) of the area `grid_extent` (x0, y0, x1, y1,
normalised to the image the model sees; set by the train stage from the convert geometry). Everything here maps
that box onto a feature map or the image itself, so image and spectrum statistics of the same spot can meet.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metallo.spectra import snv


def cell_pooling_weights(extent, grid: tuple[int, int], image_size: int, stride: int) -> torch.Tensor:
    """(S, h * w) weights that average a stride-`stride` feature map over each measurement cell.

    Weight (k, p) is the share of feature pixel p's area that lies in cell k's box (`extent` is where the grid lies
    in the image, normalised), divided by the cell's total, so `weights @ features` is each cell's mean feature. A
    cell outside the image (possible with `convert.fit: crop`) gets the image mean instead.
    """
    rows, cols = grid
    size = -(-image_size // stride)  # each ResNet stage rounds up, so stage s is ceil(image_size / stride) wide
    x0, y0, x1, y1 = (float(v) for v in extent)

    def overlap(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:  # (cells, size): overlap of [lo, hi) with pixels
        edges = torch.arange(size + 1, dtype=torch.float64) * stride / image_size
        left, right = edges[:-1].view(1, -1), edges[1:].view(1, -1)
        return (torch.minimum(hi.view(-1, 1), right) - torch.maximum(lo.view(-1, 1), left)).clamp_min(0)

    xs = x0 + (x1 - x0) * torch.arange(cols + 1, dtype=torch.float64) / cols
    ys = y0 + (y1 - y0) * torch.arange(rows + 1, dtype=torch.float64) / rows
    wx, wy = overlap(xs[:-1], xs[1:]), overlap(ys[:-1], ys[1:])  # (cols, size), (rows, size)
    weights = (wy[:, None, :, None] * wx[None, :, None, :]).reshape(rows * cols, size * size)
    total = weights.sum(dim=1, keepdim=True)
    weights = torch.where(total > 0, weights / total.clamp_min(1e-12), torch.full_like(weights, 1.0 / weights.shape[1]))
    return weights.float()


def _same_size_box_blur(grey: torch.Tensor, scale: int) -> torch.Tensor:
    if scale == 1:
        return grey
    before = (scale - 1) // 2
    return F.avg_pool2d(
        F.pad(grey, (before, scale - 1 - before, before, scale - 1 - before), mode="replicate"), scale, stride=1
    )


def texture_maps(pixel_values: torch.Tensor, scales) -> torch.Tensor:
    """(B, 3, H, W) intensities -> (B, 2 + 3 * len(scales), H, W) maps whose cell means describe local texture.

    The grey image is divided by its own mean first (a lamp or camera gain cancels). Maps: grey level and its
    square, then at each box-blur `scale` the gradient magnitude, its square and the absolute Laplacian (edge
    density and contrast fall as grains grow, and the scale at which they do says how large the grains are).
    """
    grey = pixel_values.float().mean(dim=1, keepdim=True)
    grey = grey / grey.mean(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    maps = [grey, grey.square()]
    for scale in scales:
        level = _same_size_box_blur(grey, scale)
        padded = F.pad(level, (1, 1, 1, 1), mode="replicate")
        dx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
        dy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
        laplacian = level - F.avg_pool2d(padded, 3, stride=1)
        energy = dx.square() + dy.square()
        maps += [energy.sqrt(), energy, laplacian.abs()]
    return torch.cat(maps, dim=1)


def cell_spectra_bands(spectra: torch.Tensor, n_bands: int) -> torch.Tensor:
    """(B, S, L) spectra as measured -> (B, S, n_bands) band means of each SNV-normalised spectrum."""
    batch, n_spectra, length = spectra.shape
    bands = F.adaptive_avg_pool1d(snv(spectra.float()).reshape(batch * n_spectra, 1, length), n_bands)
    return bands.view(batch, n_spectra, n_bands)


class CellInteractionFeatures(nn.Module):
    """Second-order image x spectrum statistics of the same measurement cells, as one vector per sample.

    For every cell k: texture statistics a_k of the micrograph over the cell's box (log cell means of
    :func:`texture_maps`, computed on the image at the resolution it is given, best the stored one) and the SNV
    band means b_k of spectrum k, each standardised with training statistics and extended by a constant 1. The
    sample's vector is the mean over cells of the outer products [a_k, 1] x [b_k, 1]: a linear function of it is a
    per-cell bilinear model, mean_k ([a_k, 1]^T W [b_k, 1]), which holds per-cell interactions (a property visible
    only where the spectrum was measured) as well as the global means of both views. Fitted in closed form by ridge
    (:meth:`prepare` then :meth:`set_statistics`); :meth:`cell_terms` splits a linear readout into cells.
    """

    def __init__(self, grid, grid_extent, n_bands: int, texture_scales=(1, 2, 4)):
        super().__init__()
        self.grid, self.grid_extent = tuple(grid), tuple(float(v) for v in grid_extent)
        self.n_bands, self.texture_scales = int(n_bands), list(texture_scales)
        self.n_texture = 2 + 3 * len(self.texture_scales)
        n_cell = self.n_texture + self.n_bands
        self.register_buffer("cell_mean", torch.zeros(n_cell))
        self.register_buffer("cell_std", torch.ones(n_cell))
        self.register_buffer("feature_mean", torch.zeros(self.n_features))
        self.register_buffer("feature_std", torch.ones(self.n_features))
        self._weights: dict[tuple, torch.Tensor] = {}

    @property
    def n_features(self) -> int:
        return (self.n_texture + 1) * (self.n_bands + 1)

    def _pooling(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        if height != width:
            raise ValueError(f"cell statistics need square images (convert writes crop x crop); got {height}x{width}")
        key = (height, image.device)
        if key not in self._weights:  # a pure function of the geometry, so cached rather than saved
            self._weights[key] = cell_pooling_weights(self.grid_extent, self.grid, height, 1).to(image.device)
        return self._weights[key]

    def extract_cells(self, raw_pixel_values: torch.Tensor, raw_spectra: torch.Tensor) -> torch.Tensor:
        """Raw per-cell statistics (B, S, n_texture + n_bands): log texture means, then SNV band means."""
        with torch.autocast(raw_spectra.device.type, enabled=False):
            maps = texture_maps(raw_pixel_values, self.texture_scales).flatten(2)  # (B, M, H*W)
            texture = (maps @ self._pooling(raw_pixel_values).t()).clamp_min(1e-8).log().transpose(1, 2)
            return torch.cat([texture, cell_spectra_bands(raw_spectra, self.n_bands)], dim=-1)

    def _factors(self, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cells = (cells.float() - self.cell_mean) / self.cell_std
        ones = cells.new_ones(cells.shape[:2] + (1,))
        return torch.cat([cells[..., : self.n_texture], ones], dim=-1), torch.cat(
            [cells[..., self.n_texture :], ones], dim=-1
        )

    def interactions(self, cells: torch.Tensor) -> torch.Tensor:
        """(B, S, n_texture + n_bands) raw cell statistics -> (B, n_features) mean outer products (unstandardised)."""
        texture, bands = self._factors(cells)
        return torch.einsum("bsi,bsj->bij", texture, bands).flatten(1) / cells.shape[1]

    def extract_raw(self, raw_pixel_values: torch.Tensor, raw_spectra: torch.Tensor) -> torch.Tensor:
        """What the closed-form fit collects per sample: the raw cell statistics, flattened (B, S * C)."""
        return self.extract_cells(raw_pixel_values, raw_spectra).flatten(1)

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        """Training rows of :meth:`extract_raw` -> the feature matrix to fit on; sets the cell statistics first."""
        cells = torch.as_tensor(raw).view(raw.shape[0], self.grid[0] * self.grid[1], -1)
        flat = cells.double().flatten(0, 1)
        with torch.no_grad():
            self.cell_mean.copy_(flat.mean(0).float())
            self.cell_std.copy_(flat.std(0, correction=0).clamp_min(1e-6).float())
            return self.interactions(cells).double().numpy()

    def forward(self, raw_pixel_values: torch.Tensor, raw_spectra: torch.Tensor) -> torch.Tensor:
        """Standardised interaction features, (B, n_features)."""
        with torch.autocast(raw_spectra.device.type, enabled=False):
            cells = self.extract_cells(raw_pixel_values, raw_spectra)
            return (self.interactions(cells) - self.feature_mean) / self.feature_std

    def cell_terms(self, raw_pixel_values: torch.Tensor, raw_spectra: torch.Tensor, head: nn.Linear) -> torch.Tensor:
        """Each cell's share of ``head(self(...))``, (B, S): their mean equals the readout minus its bias."""
        with torch.autocast(raw_spectra.device.type, enabled=False):
            texture, bands = self._factors(self.extract_cells(raw_pixel_values, raw_spectra))
            scaled = (head.weight.float().view(-1) / self.feature_std).view(texture.shape[-1], bands.shape[-1])
            offset = (head.weight.float().view(-1) * self.feature_mean / self.feature_std).sum()
            return torch.einsum("bsi,ij,bsj->bs", texture, scaled, bands) - offset

    @torch.no_grad()
    def set_statistics(self, mean, std) -> None:
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(std, dtype=torch.float32))


__all__ = ["CellInteractionFeatures", "cell_pooling_weights", "cell_spectra_bands", "texture_maps"]
