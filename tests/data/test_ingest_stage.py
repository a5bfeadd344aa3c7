"""The ingest stage, ``run_ingest``: rejected.csv, samples.parquet and metrics/ingest.json, the ``fail`` / ``skip``
modes, and what a failure leaves behind. Real files in tmp_path, tiny sizes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from metallo.data.ingest import run_ingest, validate_manifest
from metallo.errors import MetalloError
from tests.helpers import data as H

SHAPE = H.SHAPE


def validate(raw: Path, **kwargs):
    return validate_manifest(raw, spectra_shape=SHAPE, workers=1, show_progress=False, **kwargs)


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
