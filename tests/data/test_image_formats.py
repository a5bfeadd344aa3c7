"""Images written by other libraries (tifffile, imagecodecs/libpng, Pillow) decode to exactly their pixels.

TIFF: strips of one or many rows, tiles, planar layouts, no/LZW/deflate compression, strips larger
than 64 KiB. PNG: 16-bit grey, grey+alpha, RGB and RGBA read at their full depth. The decoded size
is bounded from the header before any pixel is decoded (issue 24, items 1, 2 and 12).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import tifffile
from imagecodecs import png_encode
from PIL import Image

from metallo.data.readers import DECODE_MEMORY_BYTES, MAX_DECODED_BYTES, SampleError, read_image, scale_to_8bit

#: A 12-bit camera frame in 16-bit RGB, 200 x 200: 240,000 bytes, several times a 64 KiB chunk.
RGB12 = (np.arange(200 * 200 * 3, dtype=np.uint32) * 7919 % 4096).astype(np.uint16).reshape(200, 200, 3)


TIFF_LAYOUTS = {
    "default-strips": {},
    "one-strip": {"rowsperstrip": 200},
    "strips-of-7-rows": {"rowsperstrip": 7},
    "tiles-32": {"tile": (32, 32)},
    "planar-separate": {"planarconfig": "separate", "rowsperstrip": 13},  # written as 3 x H x W
    "lzw": {"compression": "lzw", "rowsperstrip": 50},
    "deflate": {"compression": "zlib", "rowsperstrip": 50},
    "deflate-tiles": {"compression": "zlib", "tile": (64, 48)},
    "lzw-predictor": {"compression": "lzw", "predictor": True},
    "big-endian": {"byteorder": ">"},
}


@pytest.mark.parametrize("layout", TIFF_LAYOUTS)
def test_16bit_rgb_tiff_written_by_tifffile_reads_exactly(tmp_path, layout):
    path = tmp_path / "rgb16.tif"
    planar = layout == "planar-separate"
    tifffile.imwrite(path, np.moveaxis(RGB12, -1, 0) if planar else RGB12, photometric="rgb", **TIFF_LAYOUTS[layout])
    stored = read_image(path)
    assert (stored.width, stored.height, stored.bits, stored.format) == (200, 200, 16, "TIFF")
    np.testing.assert_array_equal(stored.values16, RGB12)
    assert stored.max_value == 4095


@pytest.mark.parametrize("compression", [None, "lzw", "zlib"])
@pytest.mark.parametrize("kind", ["grey8", "rgb8", "grey16", "rgba16", "rgba8"])
def test_other_tiff_kinds_read_exactly(tmp_path, kind, compression):
    rng = np.random.default_rng(1)
    dtype = np.uint16 if kind.endswith("16") else np.uint8
    channels = {"grey": None, "rgb": 3, "rgba": 4}[kind.rstrip("816")]
    shape = (90, 120) if channels is None else (90, 120, channels)
    values = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    path = tmp_path / "x.tif"
    extra = {"extrasamples": ["unassalpha"]} if channels == 4 else {}
    tifffile.imwrite(
        path, values, photometric="minisblack" if channels is None else "rgb", compression=compression, **extra
    )
    stored = read_image(path)
    colour = values if channels is None else values[..., :3]
    if dtype == np.uint16:
        np.testing.assert_array_equal(stored.values16, colour)
    else:
        expected = np.stack([colour] * 3, axis=-1) if channels is None else colour
        np.testing.assert_array_equal(np.asarray(stored.rgb8()), expected)
    assert stored.max_value == int(colour.max())


def test_tiff_written_by_pillow_with_lzw_reads_exactly(tmp_path):
    values = np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "p.tif", compression="tiff_lzw")
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "p.tif").rgb8()), values)


@pytest.mark.parametrize("compression", ["jpeg", "packbits", "zstd"])
def test_other_tiff_compressions_decode(tmp_path, compression):
    values = np.full((48, 64, 3), (200, 100, 50), np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", values, photometric="rgb", compression=compression)
    decoded = np.asarray(read_image(tmp_path / "c.tif").rgb8()).astype(int)
    assert np.abs(decoded - values).max() <= (3 if compression == "jpeg" else 0)


def test_unsupported_tiff_sample_formats_are_refused_with_a_reason(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.ones((40, 40), np.float32))
    with pytest.raises(SampleError, match="float"):
        read_image(tmp_path / "f.tif")
    tifffile.imwrite(tmp_path / "s.tif", np.ones((40, 40, 3), np.int16), photometric="rgb")
    with pytest.raises(SampleError, match="int16"):
        read_image(tmp_path / "s.tif")


# ------------------------------------------------------------------------------------------------
# 16-bit PNGs: every colour type at full depth
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_of_every_colour_type_reads_at_full_depth(tmp_path, channels):
    values = RGB12[:60, :80, 0] if channels == 1 else np.concatenate([RGB12[:60, :80]] * 2, axis=-1)[..., :channels]
    path = tmp_path / "x.png"
    path.write_bytes(png_encode(np.ascontiguousarray(values)))  # libpng, through imagecodecs
    stored = read_image(path)
    assert (stored.bits, stored.format, stored.width, stored.height) == (16, "PNG", 80, 60)
    colour = {1: values, 2: values[..., 0], 3: values, 4: values[..., :3]}[channels]
    np.testing.assert_array_equal(stored.values16, colour)
    assert stored.max_value == int(colour.max())  # 4095: `bit_depth: auto` sees 12 bits
    rgb = colour if colour.ndim == 3 else np.stack([colour] * 3, axis=-1)
    np.testing.assert_array_equal(np.asarray(stored.rgb8(12)), scale_to_8bit(rgb, 12))


def test_decoded_size_is_bounded_from_the_header_before_decoding(tmp_path):
    """A 7000 x 7000 16-bit RGB TIFF of constant pixels is a few hundred KB on disk but 294 MB decoded
    (under the pixel limit): refused from its header. So is a 16-bit RGBA PNG announcing 5000 x 5000."""
    path = tmp_path / "bomb.tif"
    tile = np.zeros((1024, 1024, 3), np.uint16)
    tifffile.imwrite(
        path,
        data=(tile for _ in range(49)),
        shape=(7000, 7000, 3),
        dtype=np.uint16,
        photometric="rgb",
        tile=(1024, 1024),
        compression="zlib",
        compressionargs={"level": 1},
    )
    assert path.stat().st_size < 2_000_000
    with pytest.raises(SampleError, match="decoded size .* above the limit") as err:
        read_image(path)
    assert f"{MAX_DECODED_BYTES:,}" in str(err.value)
    png = bytearray(png_encode(np.zeros((16, 16, 4), np.uint16)))
    png[16:24] = struct.pack(">II", 5000, 5000)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    (tmp_path / "bomb.png").write_bytes(bytes(png))
    with pytest.raises(SampleError, match="decoded size .* above the limit"):
        read_image(tmp_path / "bomb.png")


@pytest.mark.parametrize("compression", [None, "lzw", "zlib", "png"])
def test_truncated_tiff_and_16bit_png_are_refused_not_zero_filled(tmp_path, compression):
    path = tmp_path / "half"
    if compression == "png":
        data = png_encode(RGB12)
    else:
        tifffile.imwrite(path, RGB12, photometric="rgb", compression=compression, rowsperstrip=20)
        data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SampleError, match="corrupt or truncated"):
        read_image(path)


def test_worker_pool_is_sized_by_memory_as_well_as_cores(monkeypatch):
    from metallo import parallel

    budget = DECODE_MEMORY_BYTES
    monkeypatch.setattr(parallel, "available_memory", lambda: int(2.5 * budget))
    assert parallel.resolve_workers(8, budget) == 2  # two images at the limits fit, not eight
    assert parallel.resolve_workers(None, budget) == min(2, parallel.resolve_workers(None))
    assert parallel.resolve_workers(8) == 8  # no memory estimate: cores (or the setting) only
    monkeypatch.setattr(parallel, "available_memory", lambda: 0)
    assert parallel.resolve_workers(8, budget) == 1  # never below one worker
    monkeypatch.setattr(parallel, "available_memory", lambda: None)
    assert parallel.resolve_workers(3, budget) == 3


def test_bit_depth_auto_sees_12_bits_in_16bit_rgb_png_and_tiff(tmp_path):
    """The data set of the report: a 12-bit frame as 16-bit RGB PNG and TIFF; auto resolves 12 bits, so the
    converted pixels span 0..255 (Pillow's high byte gave max 15 and a processed mean of 7.6)."""
    import json

    from metallo.data.convert import run_convert
    from metallo.data.ingest import run_ingest
    from tests.helpers import data as H

    raw = H.RawFolder(tmp_path / "raw")
    frame = np.ascontiguousarray(RGB12[:48, :64])
    (raw.root / "images" / "p.png").write_bytes(png_encode(frame))
    tifffile.imwrite(raw.root / "images" / "t.tif", frame, photometric="rgb", compression="lzw")
    raw.add("p", "images/p.png", raw.good_spectra("p.npy"))
    raw.add("t", "images/t.tif", raw.good_spectra("t.npy", seed=1))
    raw.write()
    paths = H.make_paths(tmp_path / "out")
    params = H.make_params(raw.root, resize=64, crop=64)
    run_ingest(params, paths)
    run_convert(params, paths)
    assert json.loads((paths.processed / "convert.json").read_text())["bit_depth"] == 12
    images = np.load(paths.processed / "images.npy")
    assert images.max() == 255 and images.mean() > 100
