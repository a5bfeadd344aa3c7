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
