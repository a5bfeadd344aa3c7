"""The physics of training augmentation (metallo/augmentation.py): flips keep every spectrum under the image region
it was measured over, each flip setting flips only what it names, and flips are off by default because they mirror
every direction in the micrograph."""

import math

import pytest
import torch

from metallo.augmentation import FLIPS, Augmentation, augment_batch
from metallo.errors import MetalloError
from metallo.models.cell_path import CellPatches

GRID = (2, 4)
HEIGHT, WIDTH = 32, 48
#: How each flip setting may transform an H×W×3 image: the dims it flips (height 0, width 1).
ALLOWED = {
    "horizontal": [(), (1,)],
    "vertical": [(), (0,)],
    "both": [(), (1,), (0,), (0, 1)],
}


def painted_batch(batch: int = 16) -> dict:
    """uint8 images whose cell k is painted 10 * k, and spectra whose every point is the marker k."""
    rows, cols = GRID
    row = torch.arange(HEIGHT) // (HEIGHT // rows)
    col = torch.arange(WIDTH) // (WIDTH // cols)
    painted = (10 * (row[:, None] * cols + col[None, :])).to(torch.uint8)
    pixels = painted[None, :, :, None].expand(batch, HEIGHT, WIDTH, 3).contiguous()
    spectra = torch.arange(rows * cols, dtype=torch.float32)[None, :, None].expand(batch, rows * cols, 5).contiguous()
    return {"pixel_values": pixels, "spectra": spectra}


def flips_applied(original: torch.Tensor, flipped: torch.Tensor) -> list[tuple]:
    """Which image dims each sample was flipped along (painted images tell every flip apart)."""
    found = []
    for before, after in zip(original, flipped):
        matches = [dims for dims in ALLOWED["both"] if torch.equal(before.flip(dims) if dims else before, after)]
        assert len(matches) == 1, "not a flip of the original"
        found.append(matches[0])
    return found


def stripe_angle(image: torch.Tensor) -> float:
    """Direction of the stripes in an H×W×3 image, in degrees from the x axis (y up), by the structure tensor."""
    grey = image.float().mean(dim=-1)
    d_row, gx = torch.gradient(grey)
    gy = -d_row  # rows grow downwards
    jxx, jyy, jxy = (gx * gx).mean(), (gy * gy).mean(), (gx * gy).mean()
    gradient = 0.5 * math.degrees(math.atan2(2 * jxy, jxx - jyy))  # dominant gradient direction
    return (gradient + 90 + 90) % 180 - 90  # stripes run across their gradient


def striped(angle: float, size: int = 64, period: float = 8.0) -> torch.Tensor:
    """uint8 size×size×3 image of stripes at ``angle`` degrees from the x axis (y up)."""
    y, x = torch.meshgrid(-torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    a = math.radians(angle)
    phase = 2 * math.pi * (-x * math.sin(a) + y * math.cos(a)) / period
    grey = (127.5 + 100 * torch.sin(phase)).round().to(torch.uint8)
    return grey[..., None].expand(size, size, 3).contiguous()


def test_default_augmentation_does_not_flip():
    assert Augmentation().flips == "none"
    batch = painted_batch()
    out = augment_batch(batch, GRID, Augmentation(), torch.Generator().manual_seed(0))
    assert torch.equal(out["pixel_values"], batch["pixel_values"])
    assert torch.equal(out["spectra"], batch["spectra"])
    assert out["image_gain"].shape == (16, 3) and out["spectra_gain"].shape == (16,)
    assert "spectra_offset" not in out


@pytest.mark.parametrize("flips", ["horizontal", "vertical", "both"])
def test_flips_keep_each_spectrum_under_its_cell(flips):
    batch = painted_batch()
    out = augment_batch(batch, GRID, Augmentation(flips=flips), torch.Generator().manual_seed(1))
    applied = flips_applied(batch["pixel_values"], out["pixel_values"])
    assert set(applied) == set(ALLOWED[flips]), f"{flips} should draw each of {ALLOWED[flips]} in 16 samples"
    images = out["pixel_values"].permute(0, 3, 1, 2).float()  # the model's B×3×H×W layout
    patches = CellPatches(GRID, (0, 0, 1, 1))(images)  # (B, S, 3, h, w)
    markers = out["spectra"][..., 0]  # (B, S): which spectrum now sits at cell k
    assert torch.equal(patches, (10 * markers)[:, :, None, None, None].expand_as(patches))
    assert torch.equal(out["spectra"], markers[..., None].expand_as(out["spectra"]))  # spectra moved, not altered


def test_a_horizontal_flip_mirrors_directions_so_flips_are_off_by_default():
    """Stripes at +30 degrees to the x axis run at -30 degrees after a horizontal flip: a label that depends on a
    structure's direction on the specimen (rolling direction, a weld's axis) is not invariant to flips."""
    image = striped(30.0)
    assert stripe_angle(image) == pytest.approx(30.0, abs=2.0)
    batch = {"pixel_values": image[None].expand(8, -1, -1, -1), "spectra": torch.zeros(8, 1, 4)}
    out = augment_batch(batch, (1, 1), Augmentation(flips="horizontal"), torch.Generator().manual_seed(1))
    angles = [stripe_angle(flipped) for flipped in out["pixel_values"]]
    assert {round(angle / 30) for angle in angles} == {1, -1}
    flipped = [angle for angle, sample in zip(angles, out["pixel_values"]) if not torch.equal(sample, image)]
    assert flipped and all(angle == pytest.approx(-30.0, abs=2.0) for angle in flipped)


@pytest.mark.parametrize("flips", ["diagonal", "None", True])
def test_invalid_flips_are_refused(flips):
    assert flips not in FLIPS
    with pytest.raises(MetalloError, match=r"preprocess.augment_flips must be one of none, horizontal"):
        Augmentation(flips=flips)
