"""MetalloNet's learned per-cell path: each measurement cell's own image region and its own spectrum.

Spectrum k of a sample was measured over grid cell k. The path cuts the stored-resolution micrograph into the
cells' regions (:class:`CellPatches`), encodes every region with one small CNN whose weights all cells share
(:class:`CellImageEncoder`; a sample is ``rows * cols`` training instances of it), encodes every spectrum's shape
with a 1-D CNN that keeps wavelength positions (:class:`SpectrumShapeEncoder`), fuses the two per cell into one
contribution (:class:`CellFusion`) and reads the sample's global context from the cells' mean features. Nothing in
it is a hand-made statistic: orientation, elongation, arrangement, band position or width are whatever the
filters learn to respond to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_block(in_channels: int, out_channels: int, stride: int, kernel_size: int = 3) -> list[nn.Module]:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
    return [conv, nn.BatchNorm2d(out_channels), nn.GELU()]


class CellPatches(nn.Module):
    """(B, C, H, W) images -> (B, S, C, h, w): the region of every measurement cell, at the given resolution.

    ``grid_extent`` (x0, y0, x1, y1) says where the grid lies in the image, normalised. When the grid spans the
    whole image and its cells are whole pixels (the default geometry), the regions are a reshape of the image;
    otherwise each region is resampled bilinearly at its own pixel spacing (zeros outside the image).
    """

    def __init__(self, grid, grid_extent):
        super().__init__()
        self.rows, self.cols = (int(v) for v in grid)
        self.extent = tuple(float(v) for v in grid_extent)
        self._grids: dict[tuple, torch.Tensor] = {}

    def patch_size(self, height: int, width: int) -> tuple[int, int]:
        x0, y0, x1, y1 = self.extent
        return max(1, round(height * (y1 - y0) / self.rows)), max(1, round(width * (x1 - x0) / self.cols))

    def _aligned(self, height: int, width: int) -> bool:
        return self.extent == (0.0, 0.0, 1.0, 1.0) and height % self.rows == 0 and width % self.cols == 0

    def _sampling_grid(self, height: int, width: int, device, dtype) -> torch.Tensor:
        key = (height, width, device, dtype)
        if key not in self._grids:  # a function of the geometry: cached, not saved
            ph, pw = self.patch_size(height, width)
            x0, y0, x1, y1 = self.extent
            cell_w, cell_h = (x1 - x0) / self.cols, (y1 - y0) / self.rows
            row = torch.arange(self.rows, dtype=torch.float64).view(-1, 1, 1, 1)
            col = torch.arange(self.cols, dtype=torch.float64).view(1, -1, 1, 1)
            ys = y0 + (row + (torch.arange(ph, dtype=torch.float64).view(1, 1, -1, 1) + 0.5) / ph) * cell_h
            xs = x0 + (col + (torch.arange(pw, dtype=torch.float64).view(1, 1, 1, -1) + 0.5) / pw) * cell_w
            ys, xs = torch.broadcast_tensors(ys, xs)  # (rows, cols, ph, pw), normalised 0..1
            grid = torch.stack([2 * xs - 1, 2 * ys - 1], dim=-1).reshape(self.rows * self.cols * ph, pw, 2)
            self._grids[key] = grid.to(device=device, dtype=dtype)
        return self._grids[key]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = images.shape
        ph, pw = self.patch_size(height, width)
        if self._aligned(height, width):
            patches = images.reshape(batch, channels, self.rows, ph, self.cols, pw).permute(0, 2, 4, 1, 3, 5)
            return patches.reshape(batch, self.rows * self.cols, channels, ph, pw)
        grid = self._sampling_grid(height, width, images.device, images.dtype).expand(batch, -1, -1, -1)
        sampled = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return sampled.view(batch, channels, self.rows * self.cols, ph, pw).transpose(1, 2)


class CellImageEncoder(nn.Module):
    """A small CNN over each cell's region, weights shared by all cells: (B, S, 3, h, w) -> (B, S, out_dim).

    A 5x5 stride-2 stem, then one 3x3 stride-2 convolution per further entry of ``channels``; the feature map
    is summarised by its mean and standard deviation over the region (how strongly and how unevenly
    each learned filter responds), so any region size works.
    """

    def __init__(self, channels, out_dim: int):
        super().__init__()
        layers = _conv_block(3, channels[0], stride=2, kernel_size=5)
        for in_channels, out_channels in zip(channels, channels[1:]):
            layers += _conv_block(in_channels, out_channels, stride=2)
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Sequential(nn.LayerNorm(2 * channels[-1]), nn.Linear(2 * channels[-1], out_dim))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        batch, cells = patches.shape[:2]
        patches = patches.flatten(0, 1).contiguous(memory_format=torch.channels_last)  # faster convolutions
        features = self.convs(patches).flatten(2)  # (B*S, C, h'*w')
        with torch.autocast(features.device.type, enabled=False):  # moments in float32, also under bf16
            features = features.float()
            summary = torch.cat([features.mean(-1), features.std(-1, correction=0)], dim=-1)
        return self.proj(summary).view(batch, cells, -1)


class SpectrumShapeEncoder(nn.Module):
    """Each normalised spectrum's shape -> a vector, weights shared by all spectra: (B, S, L) -> (B, S, out_dim).

    The spectrum is resampled to ``resolution`` points (any measured length works), then a 1-D CNN (stride 2 per
    entry of ``channels``) whose output is flattened, not pooled: where along the wavelength axis a feature sits
    (a band's position, width, asymmetry) reaches the projection.
    """

    def __init__(self, channels, resolution: int, out_dim: int):
        super().__init__()
        self.resolution = int(resolution)
        layers, in_channels = [], 1
        for out_channels in channels:
            conv = nn.Conv1d(in_channels, out_channels, kernel_size=5, stride=2, padding=2, bias=False)
            layers += [conv, nn.BatchNorm1d(out_channels), nn.GELU()]
            in_channels = out_channels
        self.convs = nn.Sequential(*layers)
        length = self.resolution
        for _ in channels:
            length = (length + 1) // 2
        self.proj = nn.Sequential(nn.Linear(in_channels * length, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, spectra: torch.Tensor) -> torch.Tensor:
        batch, cells, length = spectra.shape
        flat = spectra.reshape(batch * cells, 1, length).float()
        if length > self.resolution:  # band means: every measured point counts
            flat = F.adaptive_avg_pool1d(flat, self.resolution)
        elif length < self.resolution:
            flat = F.interpolate(flat, size=self.resolution, mode="linear", align_corners=False)
        return self.proj(self.convs(flat).flatten(1)).view(batch, cells, -1)


class CellFusion(nn.Module):
    """Per-cell fusion and aggregation: (B, S, D) image and spectral cell vectors -> (B,) and (B, S).

    Each cell's contribution is an MLP of [image, spectrum, image * spectrum] (the product makes an interaction
    of what the image and the spectrum of one spot show easy to learn); the sample's global part is an MLP of the
    cells' mean image and spectral vectors. The prediction is the global part plus the mean contribution.
    """

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.cell_mlp = nn.Sequential(
            nn.LayerNorm(3 * width), nn.Linear(3 * width, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, 1)
        )
        self.global_mlp = nn.Sequential(
            nn.LayerNorm(2 * width), nn.Linear(2 * width, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, 1)
        )

    @property
    def readouts(self) -> list[nn.Linear]:
        return [self.cell_mlp[-1], self.global_mlp[-1]]

    def forward(self, image_cells: torch.Tensor, spectral_cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fused = torch.cat([image_cells, spectral_cells, image_cells * spectral_cells], dim=-1)
        contributions = self.cell_mlp(fused).squeeze(-1)
        context = torch.cat([image_cells.mean(1), spectral_cells.mean(1)], dim=-1)
        return self.global_mlp(context).squeeze(-1), contributions


class CellContrast(nn.Module):
    """A self-supervised signal for the cell image encoder: SimCLR's contrastive loss (NT-Xent) over cell regions.

    The label says little about any one cell (it is an average over the grid), so from labels alone a cell encoder
    learns what it can already see; a property its first random filters do not respond to (the elongation of small
    particles, how a phase is arranged) stays out of reach. This loss asks the encoder to recognise each cell of a
    batch in a second, altered view of it among all the batch's cells. It needs no label and no hand-made statistic:
    to tell cells apart the encoder has to describe what differs between them (shapes, arrangements, directions of
    structure), and it has to ignore what the views change.

    The views respect the physics of a measurement cell. ``views="crop"`` pairs each cell's encoding with that of a
    random crop (``crop`` of each side, same spot for the batch) of it; ``views="halves"`` pairs two disjoint
    halves of each cell, split across a random axis (two or three pixels apart), which share no pixel and so
    match only through what the whole cell has in common. Mirror flips about either axis keep every shape,
    arrangement and axis direction's alignment with the frame (a direction at angle theta becomes -theta, whose
    cos 2 theta is the same) — a quarter turn does not and is not used; a random gain, offset and noise per cell
    change what the lamp and camera change, so the encoder stops describing cells by their brightness. Used in
    training only; the projection ``head`` is discarded by inference.
    """

    def __init__(self, width: int, temperature: float, crop: float, views: str = "crop"):
        super().__init__()
        self.temperature, self.crop, self.views = float(temperature), float(crop), views
        self.head = nn.Sequential(nn.GELU(), nn.Linear(width, width))

    @staticmethod
    def alter(regions: torch.Tensor) -> torch.Tensor:
        """Regions (..., C, h, w) with random mirror flips, gain, offset and noise, each drawn per region."""
        per_region = (*regions.shape[:-3], 1, 1, 1)

        def coin():
            return torch.rand(per_region, device=regions.device) < 0.5

        regions = torch.where(coin(), regions.flip(-1), regions)
        regions = torch.where(coin(), regions.flip(-2), regions)
        gain = torch.exp(0.3 * torch.randn(per_region, device=regions.device, dtype=regions.dtype))
        offset = 0.3 * torch.randn(per_region, device=regions.device, dtype=regions.dtype)
        return regions * gain + offset + 0.1 * torch.randn_like(regions)

    def view(self, patches: torch.Tensor) -> torch.Tensor:
        """An altered crop (B, S, C, h', w') of cell regions (B, S, C, h, w)."""
        height, width = patches.shape[-2:]
        crop_h, crop_w = max(1, round(height * self.crop)), max(1, round(width * self.crop))
        top = int(torch.randint(0, height - crop_h + 1, ()))
        left = int(torch.randint(0, width - crop_w + 1, ()))
        return self.alter(patches[..., top : top + crop_h, left : left + crop_w])

    def halves(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two disjoint halves (B, S, C, h', w') of cell regions (B, S, C, h, w), cut across a random axis and
        returned in random order (:meth:`alter` makes them views)."""
        height, width = patches.shape[-2:]
        if torch.rand(()) < 0.5:  # cut across the rows: top and bottom halves
            half = max(1, height // 2 - 1)
            pair = patches[..., :half, :], patches[..., height - half :, :]
        else:
            half = max(1, width // 2 - 1)
            pair = patches[..., :half], patches[..., width - half :]
        return pair[::-1] if torch.rand(()) < 0.5 else pair

    def forward(self, encoder: nn.Module, patches: torch.Tensor, image_cells: torch.Tensor) -> torch.Tensor:
        """The contrastive loss over a batch's cells (encoded as ``image_cells`` (B, S, D)) and their views."""
        if self.views == "halves":
            views = [self.alter(half) for half in self.halves(patches)]
            first, second = (self.head(encoder(view).flatten(0, 1).float()) for view in views)
        else:
            first = self.head(image_cells.flatten(0, 1).float())
            second = self.head(encoder(self.view(patches)).flatten(0, 1).float())
        embeddings = F.normalize(torch.cat([first, second]), dim=-1)
        n = first.shape[0]
        similarity = embeddings @ embeddings.T / self.temperature
        similarity = similarity.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=similarity.device), -1e4)
        partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(similarity.device)
        return F.cross_entropy(similarity, partner)


__all__ = ["CellContrast", "CellFusion", "CellImageEncoder", "CellPatches", "SpectrumShapeEncoder"]
