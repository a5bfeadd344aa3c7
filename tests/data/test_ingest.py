"""Ingest: every manifest row is checked and ends up accepted or rejected with a reason.

One test per kind of bad input through ``validate_manifest``, then the stage itself
(``run_ingest``) with its outputs: rejected.csv, samples.parquet, metrics/ingest.json and the
``fail`` / ``skip`` modes. Real files in tmp_path, tiny sizes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from metallo.data.ingest import parse_dos, read_manifest, run_ingest, validate_manifest
from metallo.data.readers import MAX_ASPECT, MAX_PIXELS, MIN_SIDE
from metallo.errors import MetalloError
from tests.helpers import data as H
from tests.helpers.project import REPO

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


def test_duplicate_sample_id_rejects_later_rows_naming_the_first(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("a")
    raw.good("dup")
    raw.good("b")
    raw.good("dup", image_name="dup2.png", spectra_name="dup2.npy")
    raw.good("dup", image_name="dup3.png", spectra_name="dup3.npy")
    raw.write()
    result = validate(raw.root)
    assert list(result.accepted.sample_id) == ["a", "dup", "b"]
    assert list(result.accepted.row) == [2, 3, 4]
    assert list(result.rejected.row) == [5, 6]
    for reason in result.rejected.reason:
        assert "duplicate sample_id 'dup'" in reason and "first seen at row 3" in reason


def test_duplicate_of_a_rejected_row_is_still_a_duplicate(tmp_path):
    """The first occurrence claims the id even when it is itself rejected."""
    raw = H.RawFolder(tmp_path / "raw")
    raw.add("x", "images/missing.png", raw.good_spectra("x.npy"))
    raw.good("x", image_name="x2.png", spectra_name="x2.npy")
    raw.write()
    result = validate(raw.root)
    assert result.accepted.empty
    assert list(result.rejected.row) == [2, 3]
    assert "not found" in result.rejected.reason[0]
    assert "first seen at row 2" in result.rejected.reason[1]


def test_every_row_checked_and_all_reasons_of_a_row_listed(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("g1")
    raw.add("b1", "images/none.png", raw.good_spectra("b1.npy"))
    raw.good("g2")
    raw.add("b2", raw.good_image("b2.png"), raw.good_spectra("b2.npy"), dos="?")
    raw.add("b3", "../escape.png", "spectra/none.npy", dos="")  # three problems in one row
    raw.good("g3")
    raw.write()
    result = validate(raw.root)
    assert result.total == 6
    assert result.counts == {"total": 6, "accepted": 3, "rejected": 3}
    assert len(result.accepted) + len(result.rejected) == result.total
    assert set(result.accepted.row) | set(result.rejected.row) == set(range(2, 8))
    assert list(result.rejected.sample_id) == ["b1", "b2", "b3"]
    reason = result.rejected.set_index("sample_id").loc["b3", "reason"]
    assert "dos is missing" in reason and "outside" in reason and "not found" in reason


def test_manifest_missing_column_is_a_whole_file_error(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    row = raw.good("a")
    H.write_manifest(
        raw.root,
        [[row["sample_id"], row["image"], row["spectra"], row["dos"]]],
        header=("sample_id", "image", "spectra", "dos"),
    )
    with pytest.raises(MetalloError, match="missing column.*slice_id"):
        validate(raw.root)


def test_manifest_missing_two_columns_names_both(tmp_path):
    raw = tmp_path / "raw"
    H.write_manifest(raw, [["a", "1"]], header=("sample_id", "slice_id"))
    with pytest.raises(MetalloError) as info:
        validate(raw)
    assert "image" in str(info.value) and "spectra" in str(info.value) and "dos" in str(info.value)


def test_manifest_without_dos_column_is_allowed_when_no_label_required(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    row = raw.good("a")
    H.write_manifest(
        raw.root,
        [[row["sample_id"], "1", row["image"], row["spectra"]]],
        header=("sample_id", "slice_id", "image", "spectra"),
    )
    assert read_manifest(raw.root, require_label=False)["dos"].tolist() == [""]
    result = validate(raw.root, require_label=False)
    assert result.counts == {"total": 1, "accepted": 1, "rejected": 0}
    assert np.isnan(result.accepted.dos[0])
    with pytest.raises(MetalloError, match="dos"):
        validate(raw.root)


def test_manifest_header_whitespace_is_tolerated(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    row = raw.good("a")
    H.write_manifest(
        raw.root, [[row[c] for c in H.COLUMNS]], header=(" sample_id", "slice_id ", "image", "spectra", "dos")
    )
    result = validate(raw.root)
    assert list(result.accepted.sample_id) == ["a"]


def test_manifest_extra_columns_are_refused_by_name(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    row = raw.good("a")
    H.write_manifest(
        raw.root,
        [[row[c] for c in H.COLUMNS] + ["note", "x"]],
        header=(" sample_id", "slice_id ", "image", "spectra", "dos", "comment", "operator"),
    )
    with pytest.raises(MetalloError) as info:
        validate(raw.root)
    message = str(info.value)
    assert "manifest.csv has unexpected column(s) comment, operator" in message
    assert "exactly the columns sample_id,slice_id,image,spectra,dos" in message


def test_manifest_repeated_columns_are_refused_by_name(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    row = raw.good("a")
    H.write_manifest(raw.root, [[row[c] for c in H.COLUMNS] + ["2.0"]], header=(*H.COLUMNS, " dos"))
    with pytest.raises(MetalloError, match=r"repeats column\(s\) dos"):
        validate(raw.root)
    # the label-free form (predict) refuses them too
    with pytest.raises(MetalloError, match=r"repeats column\(s\) dos"):
        validate(raw.root, require_label=False)


def test_row_numbers_are_real_lines_after_quoted_newlines_and_blank_lines(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    a, b, c = raw.good("a"), raw.good("b"), raw.good("c")
    text = (
        ",".join(H.COLUMNS)
        + "\n"
        + f'a,"slice\nspanning\nlines",{a["image"]},{a["spectra"]},1.0\n'  # lines 2-4 (bad: control chars)
        + "\n"  # line 5: blank
        + f"b,1,{b['image']},{b['spectra']},zz\n"  # line 6: bad dos
        + f"c,1,{c['image']},{c['spectra']},2.0\n"
    )  # line 7
    (raw.root / "manifest.csv").write_text(text, encoding="utf-8")
    result = validate(raw.root)
    assert result.rejected.row.tolist() == [2, 6]
    assert "control characters" in result.rejected.reason[0]
    assert result.accepted.row.tolist() == [7]


def test_ids_are_trimmed_so_padded_duplicates_are_caught(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("a", slice_id=" 1 ")
    raw.good(" a ", image_name="a2.png", spectra_name="a2.npy")
    raw.write()
    result = validate(raw.root)
    assert result.accepted.sample_id.tolist() == ["a"] and result.accepted.slice_id.tolist() == ["1"]
    assert result.rejected.sample_id.tolist() == ["a"]
    assert "duplicate sample_id 'a' (first seen at row 2)" in result.rejected.reason[0]


@pytest.mark.parametrize(
    "text, value",
    [("1", 1.0), ("-2.5", -2.5), ("+.5", 0.5), ("3.", 3.0), ("1e3", 1000.0), ("-1.5E-3", -1.5e-3), (" 7 ", 7.0)],
)
def test_dos_plain_ascii_numbers_accepted(text, value):
    assert parse_dos(text) == (value, None)


@pytest.mark.parametrize("text", ["1_000", "\u0661", "\uff11", "1,5", "0x10", "1e", "e3", ".", "1 000", "\u00b2"])
def test_dos_other_notations_refused(text):
    value, problem = parse_dos(text)
    assert np.isnan(value) and "not a number" in problem


def test_missing_raw_folder_or_manifest(tmp_path):
    with pytest.raises(MetalloError, match="does not exist"):
        validate(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MetalloError, match="manifest.csv not found"):
        validate(tmp_path / "empty")


def test_sample_id_keeps_leading_zeros_and_sha256_matches_files(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("007", slice_id="01")
    raw.good("0042", spectra="csv")
    raw.good("1e3")  # would be 1000.0 if it were parsed as a number
    raw.write()
    result = validate(raw.root)
    accepted = result.accepted
    assert list(accepted.sample_id) == ["007", "0042", "1e3"]
    assert accepted.slice_id[0] == "01"
    for r in accepted.itertuples():
        image = (raw.root / r.image).read_bytes()
        spectra = (raw.root / r.spectra).read_bytes()
        assert r.image_sha256 == hashlib.sha256(image).hexdigest()
        assert r.spectra_sha256 == hashlib.sha256(spectra).hexdigest()
        assert (r.width, r.height) == (24, 20)
    assert accepted.dos.dtype == np.float64
    assert accepted.dos.tolist() == [float(r["dos"]) for r in raw.rows]


def test_validate_with_two_workers_matches_one(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    for i in range(6):
        raw.good(f"s{i}")
    raw.add("bad", "images/none.png", "spectra/none.npy")
    raw.write()
    one = validate_manifest(raw.root, spectra_shape=SHAPE, workers=1, show_progress=False)
    two = validate_manifest(raw.root, spectra_shape=SHAPE, workers=2, show_progress=False)
    pd.testing.assert_frame_equal(one.accepted, two.accepted)
    pd.testing.assert_frame_equal(one.rejected, two.rejected)


def test_bomb_is_rejected_without_decoding(tmp_path):
    """The bombs are refused from the header: a process capped at ~200 MB more memory than it
    starts with (decoding would need >=192 MB, resp. 1.2 GB) rejects them cleanly."""
    (tmp_path / "big.png").write_bytes(H.bomb_png(8000, 8000))
    (tmp_path / "huge.png").write_bytes(H.bomb_png(20000, 20000))
    script = textwrap.dedent(f"""
        import resource
        from metallo.data.readers import SampleError, read_image_rgb
        def vm():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[0]) * resource.getpagesize()
        limit = vm() + 150 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        for name in ("big.png", "huge.png"):
            try:
                read_image_rgb({str(tmp_path)!r} + "/" + name)
            except SampleError as err:
                print("REJECTED", name, err)
    """)
    if not Path("/proc/self/statm").exists():
        pytest.skip("needs /proc")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stdout + out.stderr
    assert "big.png" in lines[0] and "limit" in lines[0]
    assert "huge.png" in lines[1] and "decompression" in lines[1] and "limit" in lines[1]


# ------------------------------------------------------------------------------------------------
# the stage: run_ingest
# ------------------------------------------------------------------------------------------------


def _mixed_raw(root: Path) -> H.RawFolder:
    raw = H.RawFolder(root)
    raw.good("007")
    raw.add("b1", "images/none.png", raw.good_spectra("b1.npy"))
    raw.good("s1", spectra="csv", mode="L")
    raw.add("b2", raw.good_image("b2.png"), raw.spectra_file("b2.npy", H.spectra_array((6, 19))))
    raw.add("b3", "../x.png", raw.good_spectra("b3.npy"))
    raw.good("s2", mode="RGBA", size=(30, 18))
    raw.write()
    return raw


def test_run_ingest_skip_writes_good_rows_rejected_and_metrics(tmp_path):
    raw = _mixed_raw(tmp_path / "raw")
    paths = H.make_paths(tmp_path / "out")
    counts = run_ingest(H.make_params(raw.root, on_error="skip"), paths)
    assert counts == {"total": 6, "accepted": 3, "rejected": 3}

    metrics = json.loads((paths.metrics / "ingest.json").read_text())
    assert metrics == {"total": 6, "accepted": 3, "rejected": 3}

    samples = pd.read_parquet(paths.interim / "samples.parquet")
    assert list(samples.sample_id) == ["007", "s1", "s2"]
    assert samples.sample_id.map(type).eq(str).all()
    assert list(samples.row) == [2, 4, 7]
    assert {"image_sha256", "spectra_sha256", "width", "height", "dos", "slice_id"} <= set(samples.columns)
    assert samples.set_index("sample_id").loc["s2", ["width", "height"]].tolist() == [30, 18]
    for r in samples.itertuples():
        assert r.image_sha256 == H.sha256(raw.root / r.image)
        assert r.spectra_sha256 == H.sha256(raw.root / r.spectra)

    lines = (paths.interim / "rejected.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "row,sample_id,reason"
    rejected = pd.read_csv(paths.interim / "rejected.csv", dtype={"sample_id": str})
    assert list(rejected.row) == [3, 5, 6]
    assert list(rejected.sample_id) == ["b1", "b2", "b3"]
    assert "not found" in rejected.reason[0] and "shape" in rejected.reason[1] and "outside" in rejected.reason[2]
    assert len(samples) + len(rejected) == metrics["total"]


def test_run_ingest_fail_lists_every_bad_row(tmp_path):
    raw = _mixed_raw(tmp_path / "raw")
    paths = H.make_paths(tmp_path / "out")
    with pytest.raises(MetalloError) as info:
        run_ingest(H.make_params(raw.root, on_error="fail"), paths)
    message = str(info.value)
    assert "3 of 6" in message
    for row, sid, word in ((3, "b1", "not found"), (5, "b2", "shape"), (6, "b3", "outside")):
        line = next(text for text in message.splitlines() if text.strip().startswith(f"row {row} "))
        assert sid in line and word in line
    assert "on_error: skip" in message
    # the listing is on disk too, but no samples table for later stages
    rejected = pd.read_csv(paths.interim / "rejected.csv")
    assert list(rejected.row) == [3, 5, 6]
    assert not (paths.interim / "samples.parquet").exists()


def test_run_ingest_all_good_writes_header_only_rejected_csv(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("a")
    raw.good("b", spectra="csv")
    raw.write()
    paths = H.make_paths(tmp_path / "out")
    for on_error in ("fail", "skip"):
        counts = run_ingest(H.make_params(raw.root, on_error=on_error), paths)
        assert counts == {"total": 2, "accepted": 2, "rejected": 0}
        assert (paths.interim / "rejected.csv").read_text(encoding="utf-8") == "row,sample_id,reason\n"
        assert json.loads((paths.metrics / "ingest.json").read_text()) == counts
        assert len(pd.read_parquet(paths.interim / "samples.parquet")) == 2
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_run_ingest_rejects_unknown_on_error_and_unknown_keys(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("a")
    raw.write()
    paths = H.make_paths(tmp_path / "out")
    with pytest.raises(MetalloError, match="on_error"):
        run_ingest(H.make_params(raw.root, on_error="ignore"), paths)
    params = H.make_params(raw.root)
    params["ingest"]["on_eror"] = "skip"
    with pytest.raises(MetalloError, match="Did you mean: on_error"):
        run_ingest(params, paths)


def test_run_ingest_whole_file_error_writes_nothing(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "manifest.csv").write_text("sample_id,image\n", encoding="utf-8")
    paths = H.make_paths(tmp_path / "out")
    with pytest.raises(MetalloError, match="missing column"):
        run_ingest(H.make_params(raw), paths)
    assert not (tmp_path / "out").exists()


def test_run_ingest_failure_removes_the_previous_runs_outputs(tmp_path):
    """A failed run must not leave the last good run's samples.parquet/ingest.json beside its rejected.csv."""
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("a")
    raw.good("b")
    raw.write()
    paths = H.make_paths(tmp_path / "out")
    run_ingest(H.make_params(raw.root, on_error="fail"), paths)
    assert (paths.interim / "samples.parquet").exists() and (paths.metrics / "ingest.json").exists()

    (raw.root / "images" / "b.png").unlink()
    with pytest.raises(MetalloError, match="1 of 2"):
        run_ingest(H.make_params(raw.root, on_error="fail"), paths)
    assert not (paths.interim / "samples.parquet").exists()
    assert not (paths.metrics / "ingest.json").exists()
    assert pd.read_csv(paths.interim / "rejected.csv").row.tolist() == [3]  # this run's listing

    (raw.root / "manifest.csv").write_text("sample_id\n", encoding="utf-8")  # a whole-file error: nothing stays
    with pytest.raises(MetalloError, match="missing column"):
        run_ingest(H.make_params(raw.root, on_error="fail"), paths)
    assert not (paths.interim / "rejected.csv").exists()


@pytest.mark.parametrize(
    "kind", ["fifo", "socket", "link_loop", "link_to_dev_zero", "link_to_outside_fifo", "folder_link_to_fifo"]
)
def test_run_ingest_refuses_special_files_anywhere_in_the_raw_folder(tmp_path, kind):
    """Also behind symbolic links that no manifest row names: `dvc status` hung hashing a link to /dev/zero."""
    import socket

    raw = H.RawFolder(tmp_path / "raw")
    raw.good("a")
    raw.write()
    (raw.root / "extra").mkdir()
    target = raw.root / "extra" / "thing"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        try:
            server.bind(str(target))
        except OSError as err:  # path too long for AF_UNIX on some systems
            pytest.skip(f"cannot create a socket here: {err}")
        server.close()
    elif kind == "link_loop":
        os.symlink("thing", target)
    elif kind == "link_to_dev_zero":
        os.symlink("/dev/zero", target)
    else:
        (tmp_path / "elsewhere").mkdir()
        os.mkfifo(tmp_path / "elsewhere" / "pipe")
        if kind == "link_to_outside_fifo":
            os.symlink(tmp_path / "elsewhere" / "pipe", target)
        else:
            os.symlink(tmp_path / "elsewhere", target)
    paths = H.make_paths(tmp_path / "out")
    with pytest.raises(MetalloError) as info:
        run_ingest(H.make_params(raw.root), paths)
    message = str(info.value)
    named = "extra/thing/pipe" if kind == "folder_link_to_fifo" else "extra/thing"
    assert named in message and "special files" in message and "find -L RAW" in message
    if kind.startswith("link_to"):
        assert "through a symbolic link" in message
    assert not (tmp_path / "out").exists()


def test_special_manifest_file_is_a_clear_error(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    os.mkfifo(raw / "manifest.csv")  # reading it would block forever
    with pytest.raises(MetalloError, match="not a regular file"):
        validate(raw)


def test_ingest_records_bit_depth_and_largest_value(tmp_path):
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("rgb")
    twelve = np.full((20, 24), 100, dtype=np.uint16)
    twelve[3, 4] = 4000
    H.write_tiff(raw.root / "images" / "t12.tif", twelve)
    raw.add("t12", "images/t12.tif", raw.good_spectra("t12.npy"))
    Image.fromarray(np.full((20, 24), 77, dtype=np.uint8), mode="L").save(raw.root / "images" / "g.png")
    raw.add("grey", "images/g.png", raw.good_spectra("g.npy"))
    raw.write()
    accepted = validate(raw.root).accepted.set_index("sample_id")
    assert accepted.image_bit_depth.to_dict() == {"rgb": 8, "t12": 16, "grey": 8}
    assert accepted.loc["t12", "image_max_value"] == 4000 and accepted.loc["grey", "image_max_value"] == 77
    assert accepted.image_max_value.dtype == np.int64
