"""Raw data beyond the row corpus (test_bad_input_corpus.py): whole-file problems that stop ingest, short rows,
the accepted image and spectra modes decoding to 8-bit RGB / float32, and random manifests and file bytes that
never crash ingest (property-based).
"""

from __future__ import annotations

import csv
import string
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from metallo.data.ingest import validate_manifest
from metallo.data.readers import read_image_rgb, read_spectra, to_rgb8
from metallo.errors import MetalloError
from tests.helpers import data as H

SHAPE = H.SHAPE

# ------------------------------------------------------------------------------------------------
# whole-file problems
# ------------------------------------------------------------------------------------------------

HEADER = ",".join(H.COLUMNS)


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"sample_id,slice_id,image,dos\na,1,images/a.png,1.0\n", r"missing column\(s\) spectra"),
        (
            b"id,slice,img,spec,label\na,1,images/a.png,spectra/a.npy,1\n",
            r"missing column\(s\) sample_id, slice_id, image, spectra, dos",
        ),
        (b"", r"is empty; it needs a header line"),
        (b"\n\n", r"is empty"),
        (HEADER.encode() + b"\n", r"has a header but no rows"),
        (HEADER.encode() + b"\n\n\n", r"has a header but no rows"),
        (
            HEADER.encode() + b"\ncaf\xe9,1,images/a.png,spectra/a.npy,1.0\n",
            r"not UTF-8 text \(invalid continuation byte at byte 40, line 2\); save it as UTF-8",
        ),
        (b"\xff\xfe" + HEADER.encode("utf-16-le"), r"not UTF-8"),
        (
            HEADER.encode() + b"\na,1,images/a.png,spectra/a.npy,1.0,\nb,1,images/b.png,spectra/b.npy,2.0,\n",
            r"more fields than the header",
        ),
        (
            HEADER.encode() + b"\na,1,images/a.png,spectra/a.npy,1.0\nb,1,images/b.png,spectra/b.npy,2.0,extra\n",
            r"not a readable CSV file",
        ),
        (HEADER.encode() + b'\na,1,"images/a.png,spectra/a.npy,1.0\n', r"not a readable CSV file"),
    ],
)
def test_whole_file_errors(tmp_path, content, pattern):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "manifest.csv").write_bytes(content)
    with pytest.raises(MetalloError, match=pattern) as info:
        validate_manifest(raw, spectra_shape=SHAPE, workers=1, show_progress=False)
    assert "manifest.csv" in str(info.value)


def test_short_rows_are_rejected_per_row(tmp_path):
    """A row with fewer fields than the header is a bad row, not a crash."""
    raw = H.RawFolder(tmp_path / "raw")
    row = raw.good("a")
    (raw.root / "manifest.csv").write_text(
        f"{HEADER}\n{','.join(row[c] for c in H.COLUMNS)}\nb,1,{row['image']}\n", encoding="utf-8"
    )
    result = validate_manifest(raw.root, spectra_shape=SHAPE, workers=1, show_progress=False)
    assert list(result.accepted.sample_id) == ["a"]
    reason = result.rejected.reason[0]
    assert "spectra path is empty" in reason and "dos is missing" in reason


# ------------------------------------------------------------------------------------------------
# accepted modes decode to sensible 8-bit RGB
# ------------------------------------------------------------------------------------------------


def test_16bit_png_round_trips_and_scales_to_8bit(tmp_path):
    values = np.array([[0, 256, 257, 1000], [32767, 32896, 65279, 65535]], dtype=np.uint16)
    values = np.tile(values, (8, 4))  # 16 x 16: at least MIN_SIDE
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as image:
        assert image.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(image), values)
    rgb = read_image_rgb(path)  # bit_depth 16: value * 255 / 65535, rounded
    assert rgb.mode == "RGB" and rgb.size == (16, 16)
    pixels = np.asarray(rgb)
    np.testing.assert_array_equal(pixels[..., 0], pixels[..., 1])
    np.testing.assert_array_equal(pixels[..., 0], pixels[..., 2])
    np.testing.assert_array_equal(pixels[:2, :4, 0], [[0, 1, 1, 4], [127, 128, 254, 255]])
    assert pixels.dtype == np.uint8


def test_palette_and_alpha_images_convert_to_rgb(tmp_path):
    palette_path = H.write_png(tmp_path / "p.png", "P", (20, 16), seed=3)
    with Image.open(palette_path) as image:
        assert image.mode == "P"
        expected = np.asarray(image.convert("RGB"))
    rgb = read_image_rgb(palette_path)
    assert rgb.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(rgb), expected)

    rgba = H.image_array("RGBA", (16, 18), seed=1)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(np.asarray(read_image_rgb(tmp_path / "rgba.png")), rgba[..., :3])

    grey = H.image_array("L", (20, 16), seed=2)
    Image.fromarray(grey, mode="L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(np.asarray(read_image_rgb(tmp_path / "l.png")), np.repeat(grey[..., None], 3, 2))
    assert to_rgb8(Image.fromarray(grey, mode="L")).mode == "RGB"


def test_spectra_formats_load_as_float32(tmp_path):
    array = H.spectra_array(seed=4, dtype=np.float64)
    for name in ("a.npy", "b.csv"):
        H.write_spectra(tmp_path / name, array)
        loaded = read_spectra(tmp_path / name, SHAPE)
        assert loaded.dtype == np.float32 and loaded.shape == SHAPE
        np.testing.assert_allclose(loaded, array.astype(np.float32), rtol=1e-6)
    np.save(tmp_path / "f.npy", np.asfortranarray(array.astype(np.float32)))
    np.testing.assert_array_equal(read_spectra(tmp_path / "f.npy", SHAPE), array.astype(np.float32))
    with open(tmp_path / "v2.npy", "wb") as f:
        np.lib.format.write_array(f, array, version=(2, 0))
    np.testing.assert_array_equal(read_spectra(tmp_path / "v2.npy", SHAPE), array.astype(np.float32))


# ------------------------------------------------------------------------------------------------
# property: random manifests and random file bytes never crash ingest
# ------------------------------------------------------------------------------------------------

FIELD = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["", " ", ",", '"', '""', "a,b", '"x"', "\n", "\r\n", "nan", "NA", "inf", "1e400", "-0", "007", "é", "\u202e", "\0"]
)
PATHS = (
    st.sampled_from(
        [
            "images/f0.png",
            "images/f1.png",
            "spectra/g0.npy",
            "spectra/g1.csv",
            "images/good.png",
            "spectra/good.npy",
            "images/missing.png",
            "../escape.png",
            "/etc/hostname",
            "images",
            ".",
            "",
            " images/f0.png ",
            "images/f0.png/x",
            "images\\f0.png",
            "images/../images/f1.png",
        ]
    )
    | FIELD
)
FILE_BYTES = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
    st.binary(max_size=200).map(lambda b: b"\x93NUMPY" + b),
    st.binary(min_size=1, max_size=300).map(lambda b: H.png_bytes("RGB", (8, 8))[: len(b)]),
    st.text(alphabet=string.digits + ".,-e\n naif", max_size=200).map(str.encode),
)
ROW = st.fixed_dictionaries(
    {
        "sample_id": FIELD,
        "slice_id": FIELD,
        "image": PATHS,
        "spectra": PATHS,
        "dos": st.one_of(FIELD, st.floats(allow_nan=True, allow_infinity=True).map(repr)),
    }
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(ROW, min_size=0, max_size=6),
    files=st.lists(FILE_BYTES, min_size=4, max_size=4),
    raw_text=st.none() | st.binary(max_size=300),
)
def test_random_manifests_and_files_never_crash(rows, files, raw_text):
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        (raw / "images").mkdir(parents=True)
        (raw / "spectra").mkdir()
        for name, data in zip(("images/f0.png", "images/f1.png", "spectra/g0.npy", "spectra/g1.csv"), files):
            (raw / name).write_bytes(data)
        H.write_png(raw / "images" / "good.png", "RGB", (16, 16))
        np.save(raw / "spectra" / "good.npy", H.spectra_array())
        if raw_text is None:
            with open(raw / "manifest.csv", "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f, lineterminator="\r\n")  # so fields holding a bare CR get quoted too
                writer.writerow(H.COLUMNS)
                writer.writerows([[r[c] for c in H.COLUMNS] for r in rows])
        else:  # arbitrary bytes after a valid header: a whole-file error or row-by-row verdicts
            (raw / "manifest.csv").write_bytes(",".join(H.COLUMNS).encode() + b"\n" + raw_text)
        try:
            result = validate_manifest(raw, spectra_shape=SHAPE, workers=1, show_progress=False)
        except MetalloError as err:
            assert "manifest.csv" in str(err)
            if raw_text is None:  # csv.writer output is always readable; only "no rows" can fail
                assert not rows and "no rows" in str(err)
            return
        counts = result.counts
        assert counts["accepted"] + counts["rejected"] == counts["total"]
        assert set(result.accepted.row).isdisjoint(result.rejected.row)
        rows = sorted(set(result.accepted.row) | set(result.rejected.row))
        assert len(rows) == counts["total"] and (not rows or rows[0] == 2)  # real lines: a quoted newline skips some
        assert all(isinstance(r, str) and r for r in result.rejected.reason)
        assert result.accepted.sample_id.is_unique
        if raw_text is None:
            assert counts["total"] == len(rows)
            for r in result.accepted.itertuples():
                assert r.image == "images/good.png" or r.image.strip() in (
                    "images/../images/f1.png",
                    "images/f0.png",
                    "images/f1.png",
                )
                assert np.isfinite(r.dos)
