"""Ingest: every manifest row is checked and ends up accepted or rejected with a reason.

Whole-manifest checks through ``validate_manifest`` (one test per kind of bad row: test_checks.py; the stage
``run_ingest`` with its outputs and the ``fail`` / ``skip`` modes: test_ingest_stage.py). Real files in tmp_path,
tiny sizes.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metallo.data.ingest import parse_dos, read_manifest, validate_manifest
from metallo.errors import MetalloError
from tests.helpers import data as H
from tests.helpers.project import REPO

SHAPE = H.SHAPE


def validate(raw: Path, **kwargs):
    return validate_manifest(raw, spectra_shape=SHAPE, workers=1, show_progress=False, **kwargs)


# ------------------------------------------------------------------------------------------------


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
