"""Convert: exact round-trips, row alignment, determinism across workers, no partial outputs, the geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from metallo.data.convert import GRID_COLUMNS, Geometry, convert, run_convert
from metallo.data.ingest import run_ingest
from metallo.data.readers import read_image_rgb, read_spectra
from metallo.errors import MetalloError
from tests.helpers import data as H

SHAPE = H.SHAPE
RESIZE, CROP = 16, 12
OUTPUTS = ("images.npy", "spectra.npy", "samples.parquet", "convert.json")


def _raw_mixed(root: Path) -> H.RawFolder:
    """Images of different sizes and modes, both spectra formats, one bad row in the middle."""
    raw = H.RawFolder(root)
    raw.good("007", mode="RGB", size=(40, 30))
    raw.good("b", mode="L", size=(16, 29), spectra="csv")
    raw.add("bad", "images/missing.png", "spectra/missing.npy")
    raw.good("c", mode="P", size=(24, 24), dtype=np.float64)
    raw.good("d", mode="I;16", size=(30, 20))
    raw.good("e", mode="RGBA", size=(16, 16), slice_id="2")
    raw.good("f", mode="LA", size=(50, 17), spectra="csv", slice_id="2")
    raw.write()
    return raw


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """ingest (skip) + convert, once with workers=1 and once with workers=2 into separate folders."""
    root = tmp_path_factory.mktemp("convert")
    raw = _raw_mixed(root / "raw")
    runs = []
    for workers in (1, 2):
        paths = H.make_paths(root / f"w{workers}")
        params = H.make_params(raw.root, on_error="skip", resize=RESIZE, crop=CROP, workers=workers)
        run_ingest(params, paths)
        assert run_convert(params, paths) == 6
        runs.append(paths)
    return raw, runs


def test_convert_round_trip_is_exact(converted):
    raw, (paths, _) = converted
    images = np.load(paths.processed / "images.npy")
    spectra = np.load(paths.processed / "spectra.npy")
    table = pd.read_parquet(paths.processed / "samples.parquet")
    geometry = Geometry(resize=RESIZE, crop=CROP, fit="full")  # the default fit
    assert len(table) == len(images) == len(spectra) == 6
    for i, row in enumerate(table.itertuples()):
        expected = geometry.apply(read_image_rgb(raw.root / row.image))
        np.testing.assert_array_equal(images[i], expected)
        np.testing.assert_array_equal(spectra[i], read_spectra(raw.root / row.spectra, SHAPE))
        source = raw.root / row.spectra
        if source.suffix == ".npy":
            np.testing.assert_array_equal(spectra[i], np.load(source).astype(np.float32))
        else:
            np.testing.assert_array_equal(spectra[i], np.loadtxt(source, delimiter=",").astype(np.float32))


def test_convert_dtypes_shapes_and_row_alignment(converted):
    raw, (paths, _) = converted
    images = np.load(paths.processed / "images.npy", mmap_mode="r")
    spectra = np.load(paths.processed / "spectra.npy", mmap_mode="r")
    assert images.dtype == np.uint8 and images.shape == (6, CROP, CROP, 3)
    assert spectra.dtype == np.float32 and spectra.shape == (6, *SHAPE)

    table = pd.read_parquet(paths.processed / "samples.parquet")
    interim = pd.read_parquet(paths.interim / "samples.parquet")
    assert table.columns[0] == "index"
    assert table["index"].tolist() == list(range(6))
    assert table["index"].dtype == np.int64
    accepted_order = [r["sample_id"] for r in raw.rows if r["sample_id"] != "bad"]
    assert table.sample_id.tolist() == accepted_order == interim.sample_id.tolist()
    pd.testing.assert_frame_equal(table.drop(columns=["index", *GRID_COLUMNS]), interim)
    assert (table[list(GRID_COLUMNS)].to_numpy() == [0.0, 0.0, 1.0, 1.0]).all()  # fit full: the grid spans the image
    assert table.set_index("sample_id").loc["d", ["width", "height"]].tolist() == [30, 20]


def test_convert_is_byte_identical_across_workers(converted):
    raw, (one, two) = converted
    for name in OUTPUTS:
        assert H.sha256(one.processed / name) == H.sha256(two.processed / name), name
    for name in ("samples.parquet", "rejected.csv"):
        assert H.sha256(one.interim / name) == H.sha256(two.interim / name), name


def test_convert_twice_is_byte_identical_and_leaves_no_temp_files(converted, tmp_path):
    raw, (paths, _) = converted
    before = {name: H.sha256(paths.processed / name) for name in OUTPUTS}
    params = H.make_params(raw.root, resize=RESIZE, crop=CROP, workers=1)
    run_convert(params, paths)  # again, over the existing outputs
    assert {name: H.sha256(paths.processed / name) for name in OUTPUTS} == before
    assert sorted(p.name for p in paths.processed.iterdir()) == sorted(OUTPUTS)


def test_convert_failure_leaves_no_partial_outputs(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    for i in range(4):
        raw.good(f"s{i}")
    raw.write()
    paths = H.make_paths(tmp_path / "out")
    params = H.make_params(raw.root, resize=RESIZE, crop=CROP, workers=1)
    run_ingest(params, paths)
    (raw.root / "images" / "s2.png").write_bytes(b"")  # the file broke after ingest
    with pytest.raises(MetalloError, match=r"manifest row 4 \(s2\): images/s2.png changed after ingest.*Re-run ingest"):
        run_convert(params, paths)
    assert not paths.processed.exists() or list(paths.processed.iterdir()) == []


def test_convert_refuses_empty_sample_table(tmp_path):
    samples = pd.DataFrame(columns=["sample_id", "image", "spectra"])
    with pytest.raises(MetalloError, match="no accepted samples"):
        convert(samples, tmp_path, tmp_path / "out", geometry=Geometry(RESIZE, CROP), spectra_shape=SHAPE, workers=1)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("resize, crop", [(16, 17), (10, 0), (10, -1)])
def test_geometry_rejects_bad_crop(resize, crop):
    with pytest.raises(MetalloError, match="convert.crop"):
        Geometry(resize, crop)


def test_geometry_resizes_shorter_side_then_centre_crops(tmp_path):
    geometry = Geometry(20, 20, fit="crop")
    wide = H.make_image("RGB", (60, 30), seed=1)
    out = geometry.apply(wide)
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8
    assert (
        Geometry(16, 16, "crop").apply(H.make_image("RGB", (16, 16))).tolist()
        == np.asarray(H.make_image("RGB", (16, 16))).tolist()
    )
    # a vertical stripe pattern stays centred: left and right thirds of the wide image are cut off
    stripes = np.zeros((30, 60, 3), dtype=np.uint8)
    stripes[:, 20:40] = 255
    cropped = Geometry(30, 20, "crop").apply(Image.fromarray(stripes))
    assert cropped.min() == 255
