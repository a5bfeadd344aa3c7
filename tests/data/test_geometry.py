"""Geometry: where the spectra grid (= the source frame) lands in the converted image.

Images whose grid cells have distinct flat colours go through Geometry.apply; the pixel boxes
from grid_extent + cell_boxes must hold each cell's colour, for fit full and crop, square and
4:3 frames. Then convert's grid columns and the processor's new fields.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from metallo.data.convert import GRID_COLUMNS, run_convert
from metallo.data.geometry import Geometry, cell_boxes
from metallo.data.ingest import run_ingest
from metallo.errors import MetalloError
from tests.helpers import data as H

GRID = (6, 4)


def _cell_colours(grid: tuple[int, int]) -> np.ndarray:
    """One distinct, well separated RGB colour per cell (row-major)."""
    rows, cols = grid
    k = np.arange(rows * cols)
    return np.stack(
        [
            40 + 200 * (k % cols) // max(cols - 1, 1),
            40 + 200 * (k // cols) // max(rows - 1, 1),
            np.where(k % 2, 230, 20),
        ],
        axis=1,
    ).astype(np.uint8)


def _grid_image(width: int, height: int, grid: tuple[int, int]) -> Image.Image:
    """Cell (r, c) covers rows [r*H//rows, (r+1)*H//rows) and columns [c*W//cols, ...) as docs/data.md says."""
    rows, cols = grid
    colours = _cell_colours(grid)
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    for k, colour in enumerate(colours):
        r, c = divmod(k, cols)
        pixels[r * height // rows : (r + 1) * height // rows, c * width // cols : (c + 1) * width // cols] = colour
    return Image.fromarray(pixels)


@pytest.mark.parametrize("fit", ["full", "crop"])
@pytest.mark.parametrize("width, height", [(240, 240), (320, 240), (240, 320), (301, 227)])
def test_cell_boxes_hold_their_cells_pixels(fit, width, height):
    geometry = Geometry(resize=112, crop=100, fit=fit)
    out = geometry.apply(_grid_image(width, height, GRID))
    boxes = cell_boxes(geometry.grid_extent(width, height), GRID, geometry.crop)
    colours = _cell_colours(GRID).astype(int)
    assert boxes.shape == (24, 4) and boxes.dtype == np.int64
    covered = np.zeros(out.shape[:2], dtype=int)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        assert 0 <= x0 <= x1 <= geometry.crop and 0 <= y0 <= y1 <= geometry.crop
        covered[y0:y1, x0:x1] += 1
        inner = out[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].reshape(-1, 3).astype(int)  # 1 px margin: resampling blends edges
        if len(inner) == 0:
            continue
        # every inner pixel is its own cell's colour (up to rounding), not a neighbour's
        assert np.abs(inner - colours[k]).max() <= 2, (fit, k, inner.min(0), inner.max(0), colours[k])
    assert (covered == 1).all()  # the boxes tile the output exactly (no gaps, no overlaps)


def test_full_fit_maps_the_whole_frame_and_crop_fit_loses_the_outer_cells():
    full, crop = Geometry(resize=336, crop=300, fit="full"), Geometry(resize=336, crop=300, fit="crop")
    assert full.grid_extent(400, 300) == (0.0, 0.0, 1.0, 1.0)
    assert crop.grid_extent(300, 300) == pytest.approx((-0.06, -0.06, 1.06, 1.06))
    x0, y0, x1, y1 = crop.grid_extent(400, 300)  # 4:3: 448x336 resized, 74 px cut left and right
    assert (x0, x1) == pytest.approx((-74 / 300, 374 / 300)) and (y0, y1) == pytest.approx((-0.06, 1.06))
    boxes = cell_boxes((x0, y0, x1, y1), GRID, 300)
    widths = boxes[:, 2] - boxes[:, 0]
    assert widths[0] < widths[1]  # the left column is cut
    full_boxes = cell_boxes(full.grid_extent(400, 300), GRID, 300)
    assert full_boxes[0].tolist() == [0, 0, 75, 50] and full_boxes[-1].tolist() == [225, 250, 300, 300]


def test_cell_outside_the_output_gets_an_empty_box():
    boxes = cell_boxes((-1.0, 0.0, 1.0, 1.0), (1, 4), 100)  # the frame's left half lies outside
    assert boxes.tolist() == [[0, 0, 0, 100], [0, 0, 0, 100], [0, 0, 50, 100], [50, 0, 100, 100]]


def test_geometry_rejects_unknown_fit():
    with pytest.raises(MetalloError, match="convert.fit must be one of full, crop"):
        Geometry(resize=336, crop=300, fit="stretch")


def test_convert_writes_grid_columns_for_the_chosen_fit(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("square", size=(24, 24))
    raw.good("wide", size=(32, 24))
    raw.write()
    tables = {}
    for fit in ("full", "crop"):
        paths = H.make_paths(tmp_path / fit)
        params = H.make_params(raw.root, resize=16, crop=12, fit=fit)
        run_ingest(params, paths)
        run_convert(params, paths)
        tables[fit] = pd.read_parquet(paths.processed / "samples.parquet").set_index("sample_id")
    assert tables["full"][list(GRID_COLUMNS)].to_numpy().tolist() == [[0.0, 0.0, 1.0, 1.0]] * 2
    crop = Geometry(resize=16, crop=12, fit="crop")
    for sample_id, (w, h) in (("square", (24, 24)), ("wide", (32, 24))):
        assert tables["crop"].loc[sample_id, list(GRID_COLUMNS)].tolist() == pytest.approx(crop.grid_extent(w, h))
    assert tables["crop"].loc["wide", "grid_x0"] < tables["crop"].loc["square", "grid_x0"] < 0


def test_params_refuse_unknown_fit_and_bit_depth(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("a")
    raw.write()
    paths = H.make_paths(tmp_path / "out")
    run_ingest(H.make_params(raw.root), paths)
    with pytest.raises(MetalloError, match="convert.fit"):
        run_convert(H.make_params(raw.root, fit="square"), paths)
    for bad in (7, 17, "twelve", True, 12.5):
        with pytest.raises(MetalloError, match="convert.bit_depth must be auto or a whole number 8..16"):
            run_convert(H.make_params(raw.root, bit_depth=bad), paths)
