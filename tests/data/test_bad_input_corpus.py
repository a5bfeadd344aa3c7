"""A corpus of valid and hostile raw data: ingest accepts every valid sample, rejects every bad
row with a reason that names the problem, and only whole-file problems stop it.

The corpus is built once per module in a temporary folder: valid samples of every accepted
kind (8-bit RGB/RGBA/L/LA, palette, 16-bit grey, non-square, .npy float32/float64, .csv, a
space in a file name, an in-folder symlink, ids like ``007``) mixed with one row per kind of
bad input. Whole-file problems, decoding and random manifests: test_raw_files.py.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest

from metallo.data.ingest import run_ingest, validate_manifest
from metallo.errors import MetalloError
from tests.helpers import data as H
from tests.helpers.corpus import build_corpus

SHAPE = H.SHAPE


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    raw, valid, bad = build_corpus(tmp_path_factory.mktemp("corpus"))
    result = validate_manifest(raw.root, spectra_shape=SHAPE, workers=2, show_progress=False)
    return raw, valid, bad, result


def test_every_valid_row_is_accepted(corpus):
    raw, valid, bad, result = corpus
    assert list(result.accepted.sample_id) == valid, result.rejected.to_string()
    assert result.accepted.sample_id.map(type).eq(str).all()
    accepted = result.accepted.set_index("sample_id")
    assert accepted.loc["v_wide", ["width", "height"]].tolist() == [48, 30]
    assert accepted.loc["v_tall", ["width", "height"]].tolist() == [17, 41]
    assert accepted.loc['v,comma "quoted" ünï', "slice_id"] == "2"
    assert accepted.loc["v space", "image"] == "images/with space.png"
    assert accepted.loc["v_sci_label", "dos"] == pytest.approx(-1.5e-3)


@pytest.mark.parametrize(
    "kind",
    [
        "b_missing",
        "b_missing_spec",
        "b_dir",
        "b_not_png",
        "b_jpeg",
        "b_truncated",
        "b_bomb",
        "b_bomb2",
        "b_zero_img",
        "b_1bit",
        "b_shape",
        "b_1d",
        "b_nan",
        "b_inf",
        "b_csv_inf",
        "b_csv_text",
        "b_csv_ragged",
        "b_csv_latin1",
        "b_pickle",
        "b_zero_spec",
        "b_zero_csv",
        "b_npy_bomb",
        "b_npy_garbled",
        "b_npy_short",
        "b_label_missing",
        "b_label_text",
        "b_label_nan",
        "b_label_inf",
        "b_no_slice",
        "b_dotdot",
        "b_abs",
        "b_link_out",
        "b_dirlink_out",
        "b_link_dangling",
        "b_nul",
        "b_empty_paths",
        "b_everything",
        "b_thin",
        "b_aspect",
        "b_multipage",
        "b_tiff_header_only",
        "b_tiff_bomb",
        "b_spec_f64_overflow",
        "b_spec_f32_huge",
        "b_spec_float16",
        "b_label_separator",
        "b_label_arabic",
        "b_id_control",
    ],
)
def test_bad_row_rejected_with_reason(corpus, kind):
    raw, valid, bad, result = corpus
    row = next(r for r, (sid, _) in bad.items() if sid == kind)
    keywords = bad[row][1]
    rejected = result.rejected.set_index("row")
    assert row in rejected.index, f"{kind} (row {row}) was accepted"
    reason = rejected.loc[row, "reason"]
    for keyword in keywords:
        assert keyword in reason, (kind, keyword, reason)


def test_duplicates_and_empty_id_rejected(corpus):
    raw, valid, bad, result = corpus
    rejected = result.rejected.set_index("row")
    for row, (sid, keywords) in bad.items():
        if sid in ("007", "v_csv", ""):
            assert all(k in rejected.loc[row, "reason"] for k in keywords), rejected.loc[row, "reason"]
    dup_007 = next(r for r, (sid, _) in bad.items() if sid == "007")
    assert f"first seen at row {raw.row_of('007')}" in rejected.loc[dup_007, "reason"]


def test_counts_add_up_and_rows_are_partitioned(corpus):
    raw, valid, bad, result = corpus
    assert result.total == len(raw.rows)
    assert result.counts == {"total": len(raw.rows), "accepted": len(valid), "rejected": len(bad)}
    assert set(result.rejected.row) == set(bad)
    assert set(result.accepted.row).isdisjoint(result.rejected.row)
    assert set(result.accepted.row) | set(result.rejected.row) == set(range(H.FIRST_ROW, H.FIRST_ROW + len(raw.rows)))


def test_fail_mode_lists_the_first_bad_rows_and_counts_the_rest(corpus, tmp_path):
    from metallo.data.ingest import MAX_LISTED

    raw, valid, bad, result = corpus
    paths = H.make_paths(tmp_path)
    with pytest.raises(MetalloError) as info:
        run_ingest(H.make_params(raw.root, on_error="fail"), paths)
    message = str(info.value)
    assert f"{len(bad)} of {len(raw.rows)} manifest rows" in message
    listed = [line.strip() for line in message.splitlines() if line.strip().startswith("row ")]
    assert len(bad) > MAX_LISTED and len(listed) == MAX_LISTED
    assert f"... and {len(bad) - MAX_LISTED} more (every row is listed in {paths.interim / 'rejected.csv'})" in message
    for line, (row, (sid, keywords)) in zip(listed, sorted(bad.items())):
        assert line.startswith(f"row {row} ({sid or 'no sample_id'}): ")
        assert keywords[0] in line
    written = pd.read_csv(paths.interim / "rejected.csv", dtype={"sample_id": str}, keep_default_na=False)
    assert list(written.row) == sorted(bad)


def test_skip_mode_keeps_the_valid_rows(corpus, tmp_path):
    raw, valid, bad, result = corpus
    paths = H.make_paths(tmp_path)
    counts = run_ingest(H.make_params(raw.root, on_error="skip"), paths)
    assert counts == result.counts
    samples = pd.read_parquet(paths.interim / "samples.parquet")
    assert list(samples.sample_id) == valid


def test_symlink_loop_row_rejected_and_refused_by_the_stage(tmp_path):
    """A link loop is a row problem for validate_manifest (predict), a whole-folder one for the ingest
    stage (DVC hashes the folder first and fails on it), so it is kept out of the shared corpus."""
    raw = H.RawFolder(tmp_path / "raw")
    raw.good("a")
    os.symlink("loop.png", raw.root / "images" / "loop.png")
    raw.add("b_link_loop", "images/loop.png", raw.good_spectra("b.npy"))
    raw.write()
    result = validate_manifest(raw.root, spectra_shape=SHAPE, workers=1, show_progress=False)
    assert list(result.accepted.sample_id) == ["a"]
    reason = result.rejected.reason[0]
    assert "image" in reason and "loop" in reason
    with pytest.raises(MetalloError, match=r"images/loop.png \(symbolic-link loop\)"):
        run_ingest(H.make_params(raw.root), H.make_paths(tmp_path / "out"))
