"""Ingest limits from issue 24: labels float32 cannot carry, huge manifests, hostile sample ids."""

from __future__ import annotations

import pytest

from metallo.data.checks import MAX_LABEL_ABS, parse_dos
from metallo.data.ingest import validate_manifest
from tests.helpers import data as H


def _validate(raw: H.RawFolder):
    raw.write()
    return validate_manifest(raw.root, spectra_shape=H.SHAPE, workers=1, show_progress=False)


@pytest.fixture
def one_good_file(tmp_path):
    """A raw folder with one valid image and spectra file that every row may point at."""
    raw = H.RawFolder(tmp_path / "raw")
    return raw, raw.good_image("a.png"), raw.good_spectra("a.npy")


# ------------------------------------------------------------------------------------------------
# item 7: labels outside float32's safe range
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, words",
    [
        ("1e39", ["outside", f"{MAX_LABEL_ABS:g}"]),  # finite in float64, inf in float32: ended training
        ("-3.5e38", ["outside"]),
        ("2e15", ["outside"]),
        ("1e-400", ["too close to zero", "0"]),  # float64 underflow: silently 0 before
        ("-1e-40", ["too close to zero"]),  # a float32 subnormal: precision lost
    ],
)
def test_labels_float32_cannot_carry_are_rejected_naming_the_row(one_good_file, text, words):
    raw, image, spectra = one_good_file
    raw.add("ok", image, spectra, dos="1.5")
    raw.add("bad", image, spectra, dos=text)
    result = _validate(raw)
    assert result.accepted.sample_id.tolist() == ["ok"]
    rejected = result.rejected.iloc[0]
    assert (rejected.row, rejected.sample_id) == (3, "bad")
    for word in words:
        assert word in rejected.reason, rejected.reason


@pytest.mark.parametrize("text, value", [("1e15", 1e15), ("-1e15", -1e15), ("0", 0.0), ("-0.0", 0.0), ("0e-400", 0.0)])
def test_labels_at_the_bounds_and_zero_are_accepted(text, value):
    assert parse_dos(text) == (value, None)


# ------------------------------------------------------------------------------------------------
# item 8: a huge manifest is checked in bounded memory and reported in a bounded message
# ------------------------------------------------------------------------------------------------

BIG = 200_000


@pytest.fixture(scope="module")
def big_manifest(tmp_path_factory):
    """Two valid rows, then 200,000 rows rejected without touching the disk (empty paths, a bad label)."""
    raw = H.RawFolder(tmp_path_factory.mktemp("big") / "raw")
    raw.good("a")
    raw.good("b")
    raw.write()
    with open(raw.root / "manifest.csv", "a", encoding="utf-8") as f:
        f.writelines(f"x{i},1,,,nope\n" for i in range(BIG))
    return raw


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_huge_manifest_lists_a_bounded_number_of_rows(big_manifest, tmp_path, capsys, on_error):
    import pandas as pd

    from metallo.data.ingest import MAX_LISTED, run_ingest
    from metallo.errors import MetalloError

    paths = H.make_paths(tmp_path / "out")
    params = H.make_params(big_manifest.root, on_error=on_error)
    if on_error == "fail":
        with pytest.raises(MetalloError) as info:
            run_ingest(params, paths)
        message = str(info.value)
    else:
        run_ingest(params, paths)
        message = capsys.readouterr().out
    # was one line per rejected row: 94.5 MB for 10^6 rows (the bound leaves out the folders named, whose length
    # depends on where pytest puts its temporary files)
    assert len(message.replace(str(big_manifest.root), "").replace(str(tmp_path), "")) < 200 * MAX_LISTED
    assert f"{BIG:,} of {BIG + 2:,}" in message or on_error == "skip"
    assert "row 4 (x0): " in message and f"and {BIG - MAX_LISTED:,} more" in message
    assert "rejected.csv" in message
    rejected = pd.read_csv(paths.interim / "rejected.csv", keep_default_na=False)
    assert len(rejected) == BIG and rejected.row.tolist()[-1] == BIG + 3  # every row stays listed there


# ------------------------------------------------------------------------------------------------
# Low list: sample ids, spectra CSVs
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sample_id, words",
    [
        ("abc\u202egnp.exe", ["sample_id", "format or control characters", "U+202E"]),  # bidi override
        ("a\u2066b", ["U+2066"]),
        ("x\x1b[2J\x1b[31mred", ["control characters"]),  # terminal escape sequence
        ("a\u200bb", ["U+200B"]),  # zero-width space
    ],
)
def test_ids_with_bidi_or_escape_characters_are_rejected_naming_the_row(one_good_file, sample_id, words):
    raw, image, spectra = one_good_file
    raw.add("ok", image, spectra)
    raw.add(sample_id, image, spectra)
    result = _validate(raw)
    rejected = result.rejected.iloc[0]
    assert rejected.row == 3 and result.accepted.sample_id.tolist() == ["ok"]
    for word in words:
        assert word in rejected.reason, rejected.reason


def test_listing_never_prints_an_id_raw(one_good_file):
    from metallo.data.ingest import format_rejections

    raw, image, spectra = one_good_file
    raw.add("x\x1b[2Jy\u202e", image, spectra)
    listing = format_rejections(_validate(raw).rejected)
    assert "\x1b" not in listing and "\u202e" not in listing and "\\x1b[2Jy\\u202e" in listing


def test_nfc_and_nfd_spellings_of_one_id_are_duplicates(one_good_file):
    raw, image, spectra = one_good_file
    raw.add("caf\u00e9", image, spectra)  # NFC: é as one code point
    raw.add("cafe\u0301", image, spectra)  # NFD: e + combining acute; looks identical
    result = _validate(raw)
    assert result.accepted.sample_id.tolist() == ["caf\u00e9"]
    reason = result.rejected.reason.iloc[0]
    assert "duplicate sample_id" in reason and "row 2" in reason and "Unicode" in reason


def test_spectra_csv_with_a_bom_is_read(tmp_path):
    import numpy as np

    from metallo.data.readers import read_spectra

    values = H.spectra_array()
    text = "\n".join(",".join(f"{v:.6g}" for v in row) for row in values)
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    np.testing.assert_allclose(read_spectra(tmp_path / "bom.csv", H.SHAPE), values, rtol=1e-5)


def test_oversized_spectra_csv_is_refused_before_it_is_read(tmp_path):
    from metallo.data.readers import SampleError, read_spectra
    from metallo.data.readers.spectra import MAX_CSV_BYTES_PER_VALUE

    rows, length = H.SHAPE
    path = tmp_path / "big.csv"
    with open(path, "w") as f:  # the expected 6 x 20 values, then a long tail of extra lines
        f.writelines(",".join(["0.5"] * length) + "\n" for _ in range(rows))
        f.write(("0.5," * 1000 + "0.5\n") * (rows * length * MAX_CSV_BYTES_PER_VALUE // 4000 + 3))
    with pytest.raises(SampleError, match="larger than expected"):
        read_spectra(path, H.SHAPE)
    path.write_text("".join(",".join(["0.5"] * length) + "\n" for _ in range(rows + 3)))
    with pytest.raises(SampleError, match=r"shape|more than 6 lines"):
        read_spectra(path, H.SHAPE)


def test_formula_ids_are_neutralised_in_csv_outputs(tmp_path):
    """A `=HYPERLINK(...)` sample id ran as a formula when predictions.csv was opened in a spreadsheet."""
    import csv

    import pandas as pd

    from metallo.prediction.manifest import PredictResult, write_predictions

    ids = ['=HYPERLINK("http://evil","open")', "+1+cmd", "@SUM(A1)", "-2+3", "-3.5", "plain", "a=b"]
    predictions = pd.DataFrame({"sample_id": ids, "dos_pred": [1.0] * len(ids)})
    rejected = pd.DataFrame({"row": [2], "sample_id": ["=1+1"], "reason": ["dos is missing"]})
    out = write_predictions(PredictResult(predictions, rejected, None), tmp_path / "predictions.csv")
    with open(out, newline="", encoding="utf-8") as f:
        written = [row["sample_id"] for row in csv.DictReader(f)]
    assert written == ["'" + ids[0], "'+1+cmd", "'@SUM(A1)", "'-2+3", "-3.5", "plain", "a=b"]
    assert pd.read_csv(out.with_suffix(".rejected.csv")).sample_id.tolist() == ["'=1+1"]
    assert predictions.sample_id.tolist() == ids  # the caller's frame is not changed
