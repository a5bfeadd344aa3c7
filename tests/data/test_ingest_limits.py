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
    assert len(message) < 200 * MAX_LISTED  # was one line per rejected row: 94.5 MB for 10^6 rows
    assert f"{BIG:,} of {BIG + 2:,}" in message or on_error == "skip"
    assert "row 4 (x0): " in message and f"and {BIG - MAX_LISTED:,} more" in message
    assert "rejected.csv" in message
    rejected = pd.read_csv(paths.interim / "rejected.csv", keep_default_na=False)
    assert len(rejected) == BIG and rejected.row.tolist()[-1] == BIG + 3  # every row stays listed there
