"""16-bit images as cameras write them: bit depth recorded at ingest, resolved by convert
(convert.bit_depth), stored in the processor and applied again by predict. Real PNG/TIFF files.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from metallo.data.convert import Geometry, convert, processor_settings, run_convert
from metallo.data.ingest import run_ingest, validate_manifest
from metallo.data.readers import bits_for_max, read_image, read_image_rgb, scale_to_8bit
from metallo.errors import MetalloError
from metallo.processing import MetalloProcessor
from tests.helpers import data as H
from tests.helpers.models import save_tiny_model, tiny_model, tiny_processor


def _ramp(top: int, size=(20, 24)) -> np.ndarray:
    values = np.linspace(0, top, size[0] * size[1]).round().astype(np.uint16).reshape(size)
    values[0, 0], values[-1, -1] = 0, top
    return values


def test_scale_and_bits_for_max():
    assert [bits_for_max(v) for v in (0, 1, 255, 256, 1023, 4095, 4096, 65535)] == [8, 8, 8, 9, 10, 12, 13, 16]
    np.testing.assert_array_equal(scale_to_8bit(np.array([0, 2047, 2048, 4095, 5000]), 12), [0, 127, 128, 255, 255])
    np.testing.assert_array_equal(scale_to_8bit(np.array([0, 128, 129, 65535]), 16), [0, 0, 1, 255])


def test_12bit_images_keep_their_contrast(tmp_path):
    values = _ramp(4095)
    H.write_tiff(tmp_path / "a.tif", values, ">")
    Image.fromarray(values).save(tmp_path / "a.png")
    rgb16 = np.stack([values, 4095 - values, values // 2], axis=-1)
    H.write_tiff(tmp_path / "rgb.tif", rgb16)
    for name in ("a.tif", "a.png"):
        stored = read_image(tmp_path / name)
        assert (stored.bits, stored.max_value, stored.format) == (16, 4095, name[-3:].upper().replace("TIF", "TIFF"))
        pixels = np.asarray(read_image_rgb(tmp_path / name, bit_depth=12))[..., 0]
        assert pixels.min() == 0 and pixels.max() == 255 and len(np.unique(pixels)) == 256
        old = np.asarray(read_image_rgb(tmp_path / name, bit_depth=16))[..., 0]
        assert len(np.unique(old)) == 17  # what value // 257 kept: 16 grey levels (+ rounding)
    stored = read_image(tmp_path / "rgb.tif")
    assert (stored.bits, stored.max_value) == (16, 4095)
    np.testing.assert_array_equal(np.asarray(stored.rgb8(12)), scale_to_8bit(rgb16, 12))


def _raw_with_16bit(root, top: int) -> H.RawFolder:
    raw = H.RawFolder(root)
    raw.good("rgb8", size=(24, 20))
    H.write_tiff(raw.root / "images" / "t.tif", _ramp(top))
    raw.add("t16", "images/t.tif", raw.good_spectra("t16.npy"))
    Image.fromarray(_ramp(top // 2)).save(raw.root / "images" / "p.png")
    raw.add("p16", "images/p.png", raw.good_spectra("p16.npy"))
    raw.write()
    return raw


@pytest.mark.parametrize("setting, expected", [("auto", 12), (12, 12), (16, 16), (10, 10)])
def test_convert_resolves_bit_depth_and_records_it(tmp_path, capsys, setting, expected):
    raw = _raw_with_16bit(tmp_path / "raw", 4095)
    paths = H.make_paths(tmp_path / "out")
    params = H.make_params(raw.root, resize=24, crop=24, fit="full", bit_depth=setting)
    run_ingest(params, paths)
    interim = pd.read_parquet(paths.interim / "samples.parquet").set_index("sample_id")
    assert interim.image_bit_depth.to_dict() == {"rgb8": 8, "t16": 16, "p16": 16}
    assert interim.image_max_value.loc[["t16", "p16"]].tolist() == [4095, 2047]
    run_convert(params, paths)
    info = json.loads((paths.processed / "convert.json").read_text())
    assert info == {
        "fit": "full",
        "resize": 24,
        "crop": 24,
        "bit_depth": expected,
        "bit_depth_param": setting,
        "images_16bit": 2,
        "max_value_16bit": 4095,
        "grid": list(H.GRID),
    }
    assert processor_settings(paths.processed) == {"fit": "full", "resize": 24, "crop": 24, "bit_depth": expected}
    images = np.load(paths.processed / "images.npy")
    geometry = Geometry(resize=24, crop=24, fit="full")
    for i, (sample_id, name) in enumerate((("rgb8", "rgb8.png"), ("t16", "t.tif"), ("p16", "p.png"))):
        expected_pixels = geometry.apply(read_image_rgb(raw.root / "images" / name, bit_depth=expected))
        np.testing.assert_array_equal(images[i], expected_pixels, err_msg=sample_id)
    eight = raw.root / "images" / "rgb8.png"
    for depth in (8, 10, 16):  # 8-bit images do not depend on the bit depth
        np.testing.assert_array_equal(np.asarray(read_image_rgb(eight, bit_depth=depth)), np.asarray(Image.open(eight)))
    out = capsys.readouterr().out
    assert ("clips to white" in out) == (expected == 10)
    assert "WARNING" not in out or expected == 10


def test_convert_warns_when_16bit_images_use_few_bits(tmp_path, capsys):
    raw = _raw_with_16bit(tmp_path / "raw", 700)  # 10 bits: 8-bit data stored as 16-bit, or very dark
    paths = H.make_paths(tmp_path / "out")
    params = H.make_params(raw.root, resize=24, crop=24)
    run_ingest(params, paths)
    run_convert(params, paths)
    out = capsys.readouterr().out
    assert "WARNING: the 2 16-bit image(s) use only 10 bits (largest value 700)" in out
    assert "convert.bit_depth" in out
    assert json.loads((paths.processed / "convert.json").read_text())["bit_depth"] == 10


def _ingest_one_sample(tmp_path):
    """Ingest a raw folder of one valid 8-bit sample; its params and paths."""
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("a")
    raw.write()
    paths = H.make_paths(tmp_path / "out")
    params = H.make_params(raw.root)
    run_ingest(params, paths)
    return params, paths


def test_convert_without_16bit_images_uses_16(tmp_path):
    params, paths = _ingest_one_sample(tmp_path)
    run_convert(params, paths)
    info = json.loads((paths.processed / "convert.json").read_text())
    assert (info["bit_depth"], info["images_16bit"], info["max_value_16bit"]) == (16, 0, None)


def test_convert_refuses_samples_table_from_an_older_ingest(tmp_path):
    params, paths = _ingest_one_sample(tmp_path)
    table = pd.read_parquet(paths.interim / "samples.parquet").drop(columns=["image_bit_depth", "image_max_value"])
    table.to_parquet(paths.interim / "samples.parquet", index=False)
    with pytest.raises(MetalloError, match="older ingest. Re-run ingest"):
        run_convert(params, paths)


def test_convert_names_the_row_of_an_image_that_became_unusable(tmp_path):
    """A file swapped for a 1 x 1,000,000 line after ingest: refused from its header, row named, no traceback."""
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("a")
    raw.good("b")
    raw.write()
    samples = validate_manifest(raw.root, spectra_shape=H.SHAPE, workers=1, show_progress=False).accepted
    (raw.root / "images" / "b.png").write_bytes(H.thin_png(1, 1_000_000))
    with pytest.raises(MetalloError, match=r"manifest row 3 \(b\): images/b.png changed after ingest"):
        convert(samples, raw.root, tmp_path / "out", geometry=Geometry(16, 12), spectra_shape=H.SHAPE, workers=1)
    without_digests = samples.drop(columns=["image_sha256", "spectra_sha256"])
    with pytest.raises(MetalloError, match=r"manifest row 3 \(b\): images/b.png: image is 1x1000000 pixels"):
        convert(
            without_digests, raw.root, tmp_path / "out", geometry=Geometry(16, 12), spectra_shape=H.SHAPE, workers=1
        )


# ------------------------------------------------------------------------------------------------
# the processor carries fit and bit_depth to predict
# ------------------------------------------------------------------------------------------------


def test_processor_saves_and_loads_fit_and_bit_depth(tmp_path):
    stats = {"image": {"mean": [0.5] * 3, "std": [0.2] * 3}, "spectra": {"mean": [0.0] * 4, "std": [1.0] * 4}}
    processor = MetalloProcessor.from_stats(
        stats, image_size=32, resize=36, crop=32, fit="full", bit_depth=12, spectra_norm="standard"
    )
    processor.save_pretrained(tmp_path)
    loaded = MetalloProcessor.from_pretrained(tmp_path)
    assert (loaded.fit, loaded.bit_depth, loaded.resize, loaded.crop) == ("full", 12, 36, 32)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    del config["fit"], config["bit_depth"]  # a model saved before these fields existed
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    old = MetalloProcessor.from_pretrained(tmp_path)
    assert (old.fit, old.bit_depth) == ("crop", 16)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model = tiny_model(n_spectra=6, spectrum_length=20, grid=[3, 2], image_size=32, hidden_dim=8, label_mean=2.0)
    processor = tiny_processor(
        spectrum_length=20,
        image_size=32,
        resize=36,
        crop=32,
        fit="full",
        bit_depth=12,
        spectra_mean=[0.5] * 20,
        spectra_std=[0.1] * 20,
    )
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"), model, processor)


def test_predict_applies_the_trained_bit_depth_and_rejects_a_line_image(tmp_path, model_dir):
    from metallo.prediction import load_model, predict, predict_arrays

    raw = H.RawFolder(tmp_path / "raw")
    raw.good("a", size=(40, 30))
    H.write_tiff(raw.root / "images" / "t.tif", _ramp(4095, (30, 40)))
    raw.add("t16", "images/t.tif", raw.good_spectra("t16.npy", seed=3))
    raw.add("line", raw.image_file("line.png", H.thin_png(1, 1_000_000)), raw.good_spectra("line.npy"))
    raw.good("b", size=(30, 30))
    raw.write()
    result = predict(model_dir, raw.root, workers=1, show_progress=False)
    assert result.predictions.sample_id.tolist() == ["a", "t16", "b"]
    assert result.rejected.sample_id.tolist() == ["line"]
    assert "1x1000000" in result.rejected.reason[0] and "shorter side" in result.rejected.reason[0]

    model, processor = load_model(model_dir)
    geometry = Geometry(resize=36, crop=32, fit="full")
    spectra = np.load(raw.root / "spectra" / "t16.npy")[None]
    by_depth = {}
    for depth in (12, 16):
        image = geometry.apply(read_image_rgb(raw.root / "images" / "t.tif", bit_depth=depth))[None]
        by_depth[depth] = float(predict_arrays(model, processor, image, spectra)[0][0])
    assert by_depth[12] != pytest.approx(by_depth[16], abs=1e-6)
    assert result.predictions.set_index("sample_id").loc["t16", "dos_pred"] == pytest.approx(by_depth[12], abs=1e-5)
