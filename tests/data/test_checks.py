"""Row checks: one test per kind of bad manifest row, through ``validate_manifest``: each is rejected with
its reason between two good rows. Real files in tmp_path, tiny sizes.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metallo.data.ingest import validate_manifest
from metallo.data.readers import MAX_ASPECT, MAX_PIXELS, MIN_SIDE
from tests.helpers import data as H

SHAPE = H.SHAPE


def validate(raw: Path, **kwargs):
    return validate_manifest(raw, spectra_shape=SHAPE, workers=1, show_progress=False, **kwargs)


# ------------------------------------------------------------------------------------------------


# one bad row per kind, between two good rows
# ------------------------------------------------------------------------------------------------


def _missing_file(raw: H.RawFolder):
    return raw.add("bad", "images/nope.png", raw.good_spectra("bad.npy")), ["image", "not found", "nope.png"]


def _missing_spectra(raw: H.RawFolder):
    return raw.add("bad", raw.good_image("bad.png"), "spectra/nope.npy"), ["spectra", "not found"]


def _directory_instead_of_file(raw: H.RawFolder):
    (raw.root / "images" / "dir.png").mkdir()
    return raw.add("bad", "images/dir.png", raw.good_spectra("bad.npy")), ["not a regular file"]


def _fifo_instead_of_file(raw: H.RawFolder):
    os.mkfifo(raw.root / "spectra" / "pipe.npy")  # opening it for reading would block forever
    return raw.add("bad", raw.good_image("bad.png"), "spectra/pipe.npy"), ["not a regular file"]


def _not_a_png(raw: H.RawFolder):
    image = raw.image_file("bad.png", b"GIF89a this is not a png at all")
    return raw.add("bad", image, raw.good_spectra("bad.npy")), ["not a PNG"]


def _truncated_png(raw: H.RawFolder):
    data = H.png_bytes("RGB", (24, 20), seed=5)
    image = raw.image_file("bad.png", data[: len(data) // 2])
    return raw.add("bad", image, raw.good_spectra("bad.npy")), ["truncated"]


def _bomb_pil_limit(raw: H.RawFolder):
    image = raw.image_file("bomb.png", H.bomb_png(20000, 20000))
    # refused from the PNG header by Metallo's limit before Pillow opens it
    return raw.add("bad", image, raw.good_spectra("bad.npy")), ["decompression", "limit", "20000x20000"]


def _bomb_metallo_limit(raw: H.RawFolder):
    # 8000 x 8000 = 64 M pixels: under PIL's own warning level, above Metallo's MAX_PIXELS
    image = raw.image_file("bomb.png", H.bomb_png(8000, 8000))
    return raw.add("bad", image, raw.good_spectra("bad.npy")), [
        "decompression-bomb limit",
        f"{MAX_PIXELS:,}",
        "8000x8000",
    ]


def _spectra_wrong_shape(raw: H.RawFolder):
    spectra = raw.spectra_file("bad.npy", H.spectra_array((5, 20)))
    return raw.add("bad", raw.good_image("bad.png"), spectra), ["shape", "(5, 20)", "(6, 20)"]


def _spectra_nan(raw: H.RawFolder):
    array = H.spectra_array()
    array[2, 3] = np.nan
    spectra = raw.spectra_file("bad.npy", array)
    return raw.add("bad", raw.good_image("bad.png"), spectra), ["non-finite", "1 "]


def _spectra_csv_non_number(raw: H.RawFolder):
    lines = [",".join(["0.5"] * SHAPE[1]) for _ in range(SHAPE[0])]
    lines[3] = lines[3].replace("0.5", "abc", 1)
    spectra = raw.spectra_file("bad.csv", content=("\n".join(lines) + "\n").encode())
    return raw.add("bad", raw.good_image("bad.png"), spectra), ["CSV", "non-number"]


def _spectra_pickled(raw: H.RawFolder):
    path = raw.root / "spectra" / "bad.npy"
    np.save(path, np.array([{"a": 1}, "x", 3.0], dtype=object), allow_pickle=True)
    return raw.add("bad", raw.good_image("bad.png"), "spectra/bad.npy"), ["pickled"]


def _spectra_complex_dtype(raw: H.RawFolder):
    spectra = raw.spectra_file("bad.npy", np.ones(SHAPE, dtype=np.complex128))
    return raw.add("bad", raw.good_image("bad.png"), spectra), ["dtype complex128", "float32, float64 or an integer"]


def _spectra_float64_overflows_float32(raw: H.RawFolder):
    array = H.spectra_array(dtype=np.float64)
    array[1, 1] = 1e300  # finite as float64, inf once stored as float32
    spectra = raw.spectra_file("bad.npy", array)
    return raw.add("bad", raw.good_image("bad.png"), spectra), ["1 non-finite", "float32"]


def _spectra_float32_too_large(raw: H.RawFolder):
    array = H.spectra_array()
    array[0, :3] = 3e38  # finite float32, overflows as soon as it is scaled or summed
    spectra = raw.spectra_file("bad.npy", array)
    return raw.add("bad", raw.good_image("bad.png"), spectra), ["3 value(s) with magnitude above", "1e+12"]


def _spectra_uint64_too_large(raw: H.RawFolder):
    array = np.full(SHAPE, 2**64 - 1, dtype=np.uint64)
    spectra = raw.spectra_file("bad.npy", array)
    return raw.add("bad", raw.good_image("bad.png"), spectra), [f"{SHAPE[0] * SHAPE[1]} value(s) with magnitude above"]


def _spectra_csv_too_large(raw: H.RawFolder):
    lines = [",".join(["5"] * SHAPE[1]) for _ in range(SHAPE[0])]
    lines[2] = lines[2].replace("5", "-2e13", 1)
    spectra = raw.spectra_file("bad.csv", content=("\n".join(lines) + "\n").encode())
    return raw.add("bad", raw.good_image("bad.png"), spectra), ["1 value(s) with magnitude above"]


def _thin_image(raw: H.RawFolder):
    image = raw.image_file("line.png", H.thin_png(1_000_000, 1))  # 4 KB on disk, 1 M pixels
    return raw.add("bad", image, raw.good_spectra("bad.npy")), ["1000000x1", "shorter side", f"{MIN_SIDE} px"]


def _elongated_image(raw: H.RawFolder):
    image = raw.image_file("strip.png", H.thin_png(20, 200))
    return raw.add("bad", image, raw.good_spectra("bad.npy")), ["20x200", "aspect ratio 10.0:1", f"{MAX_ASPECT:g}:1"]


def _multipage_tiff(raw: H.RawFolder):
    page = H.image_array("RGB", (24, 20))
    H.write_tiff(raw.root / "images" / "stack.tif", [page, page])
    return raw.add("bad", "images/stack.tif", raw.good_spectra("bad.npy")), ["TIFF has 2 pages", "single-page"]


def _png_suffix_on_tiff_with_bad_mode(raw: H.RawFolder):
    # the format is read from the first bytes: a float TIFF named .png is reported as the TIFF it is
    buffer = io.BytesIO()
    Image.fromarray(np.ones((20, 24), dtype=np.float32)).save(buffer, format="TIFF")
    image = raw.image_file("float.png", buffer.getvalue())
    return raw.add("bad", image, raw.good_spectra("bad.npy")), ["TIFF samples are float32", "8- or 16-bit"]


def _dos_digit_separator(raw: H.RawFolder):
    return raw.add("bad", raw.good_image("bad.png"), raw.good_spectra("bad.npy"), dos="1_000"), [
        "'1_000'",
        "not a number",
    ]


def _dos_arabic_indic_digits(raw: H.RawFolder):
    return (
        raw.add("bad", raw.good_image("bad.png"), raw.good_spectra("bad.npy"), dos="\u0661\u0662"),
        ["not a number", "plain decimal"],
    )


def _sample_id_control_char(raw: H.RawFolder):
    return raw.add("b\0ad", raw.good_image("bad.png"), raw.good_spectra("bad.npy")), ["sample_id", "control characters"]


def _slice_id_control_char(raw: H.RawFolder):
    return (
        raw.add("bad", raw.good_image("bad.png"), raw.good_spectra("bad.npy"), slice_id="1\x1b"),
        ["slice_id", "control characters"],
    )


def _spectra_unknown_suffix(raw: H.RawFolder):
    spectra = raw.spectra_file("bad.txt", content=b"1,2,3\n")
    return raw.add("bad", raw.good_image("bad.png"), spectra), ["'.txt'", "not supported"]


def _label_missing(raw: H.RawFolder):
    return raw.add("bad", raw.good_image("bad.png"), raw.good_spectra("bad.npy"), dos=""), ["dos is missing"]


def _label_not_numeric(raw: H.RawFolder):
    return raw.add("bad", raw.good_image("bad.png"), raw.good_spectra("bad.npy"), dos="high"), [
        "'high'",
        "not a number",
    ]


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN"])
def test_label_not_finite_rejected(tmp_path, text):
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("ok")
    raw.add("bad", raw.good_image("bad.png"), raw.good_spectra("bad.npy"), dos=text)
    raw.write()
    result = validate(raw.root)
    assert list(result.accepted.sample_id) == ["ok"]
    assert "dos is not finite" in result.rejected.set_index("sample_id").loc["bad", "reason"]


def _empty_sample_id(raw: H.RawFolder):
    return raw.add("", raw.good_image("bad.png"), raw.good_spectra("bad.npy")), ["sample_id is empty"]


def _empty_image_path(raw: H.RawFolder):
    return raw.add("bad", "  ", raw.good_spectra("bad.npy")), ["image path is empty"]


def _path_dotdot(raw: H.RawFolder):
    H.write_png(raw.root.parent / "x.png")  # exists, but outside the raw folder
    return raw.add("bad", "../x.png", raw.good_spectra("bad.npy")), ["outside the raw data folder", "../x.png"]


def _path_dotdot_inside_then_out(raw: H.RawFolder):
    H.write_png(raw.root.parent / "x.png")
    return raw.add("bad", "images/../../x.png", raw.good_spectra("bad.npy")), ["outside"]


def _path_absolute(raw: H.RawFolder):
    outside = H.write_png(raw.root.parent / "abs.png")
    return raw.add("bad", str(outside), raw.good_spectra("bad.npy")), ["must be relative"]


def _path_absolute_inside(raw: H.RawFolder):
    inside = raw.root / raw.good_image("abs.png")  # even an absolute path into the folder is refused
    return raw.add("bad", str(inside), raw.good_spectra("bad.npy")), ["must be relative"]


BAD_ROWS = {
    "missing_image": _missing_file,
    "missing_spectra": _missing_spectra,
    "directory_instead_of_file": _directory_instead_of_file,
    "fifo_instead_of_file": _fifo_instead_of_file,
    "not_a_png": _not_a_png,
    "truncated_png": _truncated_png,
    "bomb_pil_limit": _bomb_pil_limit,
    "bomb_metallo_limit": _bomb_metallo_limit,
    "spectra_wrong_shape": _spectra_wrong_shape,
    "spectra_nan": _spectra_nan,
    "spectra_csv_non_number": _spectra_csv_non_number,
    "spectra_pickled": _spectra_pickled,
    "spectra_complex_dtype": _spectra_complex_dtype,
    "spectra_float64_overflows_float32": _spectra_float64_overflows_float32,
    "spectra_float32_too_large": _spectra_float32_too_large,
    "spectra_uint64_too_large": _spectra_uint64_too_large,
    "spectra_csv_too_large": _spectra_csv_too_large,
    "thin_image": _thin_image,
    "elongated_image": _elongated_image,
    "multipage_tiff": _multipage_tiff,
    "png_suffix_on_tiff_with_bad_mode": _png_suffix_on_tiff_with_bad_mode,
    "dos_digit_separator": _dos_digit_separator,
    "dos_arabic_indic_digits": _dos_arabic_indic_digits,
    "sample_id_control_char": _sample_id_control_char,
    "slice_id_control_char": _slice_id_control_char,
    "spectra_unknown_suffix": _spectra_unknown_suffix,
    "label_missing": _label_missing,
    "label_not_numeric": _label_not_numeric,
    "empty_sample_id": _empty_sample_id,
    "empty_image_path": _empty_image_path,
    "path_dotdot": _path_dotdot,
    "path_dotdot_inside_then_out": _path_dotdot_inside_then_out,
    "path_absolute": _path_absolute,
    "path_absolute_inside": _path_absolute_inside,
}


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_bad_row_is_rejected_with_reason(tmp_path, kind):
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("ok1")
    bad, keywords = BAD_ROWS[kind](raw)
    raw.good("ok2")
    raw.write()

    result = validate(raw.root)

    assert result.total == 3
    assert list(result.accepted.sample_id) == ["ok1", "ok2"]
    assert list(result.accepted.row) == [2, 4]
    assert len(result.rejected) == 1
    rejected = result.rejected.iloc[0]
    assert rejected.row == 3 and rejected.sample_id == bad["sample_id"].strip()
    for keyword in keywords:
        assert keyword in rejected.reason, (keyword, rejected.reason)
