"""Tests for the foreign-instrument data-set generator (metallo.data.variants).

They check the files as written (formats, dtypes, shapes, ranges, manifest, determinism, slices,
label scale, test-slice shifts, the ``local`` profile's label structure) and do not run ingest:
Metallo's readers do not accept every format written here yet. Scale 0.1: about a second each.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metallo.data import variants as V
from metallo.data.generative import cell_fractions
from tests.helpers import data as H

SCALE = 0.1
LUMA = np.array([0.299, 0.587, 0.114])


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _spectra(path: Path) -> np.ndarray:
    if path.suffix == ".csv":
        return np.loadtxt(path, delimiter=",", ndmin=2)
    return np.load(path, allow_pickle=False)


def _intensity(path: Path) -> np.ndarray:
    """Decoded image as luminance in [0, 1], using the bit depth each profile documents."""
    im = Image.open(path)
    if im.mode == "P":
        im = im.convert("RGB")
    a = np.asarray(im).astype(np.float64)
    if im.mode == "I;16":
        return a / (4095.0 if path.suffix == ".png" else 65535.0)
    a = a / 255.0
    return a @ LUMA if a.ndim == 3 else a


def _r2(X: np.ndarray, y: np.ndarray) -> float:
    X = np.column_stack([np.ones(len(y)), X])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    return 1.0 - resid.var() / y.var()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    return {name: (root / name, V.make_variant(root / name, name, seed=0, scale=SCALE)) for name in V.PROFILES}


# ---------------------------------------------------------------------------------------------
# contract: manifest, dataset.json, shapes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(V.PROFILES))
def test_manifest_and_dataset_json(made, name):
    folder, info = made[name]
    assert json.loads((folder / "dataset.json").read_text()) == info
    assert set(info) >= {"data", "split", "profile", "description"} and info["profile"] == name
    data, split = info["data"], info["split"]
    assert set(data) == {"n_spectra", "spectrum_length", "grid"} and set(split) == {"train_slices", "test_slices"}
    rows_, cols_ = data["grid"]
    assert rows_ * cols_ == data["n_spectra"]

    with open(folder / "manifest.csv", newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert header == ["sample_id", "slice_id", "image", "spectra", "dos"]
    rows = H.read_manifest_rows(folder)
    assert len({r["sample_id"] for r in rows}) == len(rows)
    slices = [r["slice_id"] for r in rows]
    assert set(slices) == set(split["train_slices"]) | set(split["test_slices"])
    assert not set(split["train_slices"]) & set(split["test_slices"])
    for sid in split["train_slices"]:
        assert slices.count(sid) >= 6
    for sid in split["test_slices"]:
        assert slices.count(sid) >= 3
    h, w = info["details"]["frame"]["height"], info["details"]["frame"]["width"]
    for r in rows:
        for col in ("image", "spectra"):
            assert not Path(r[col]).is_absolute() and ".." not in Path(r[col]).parts
            assert (folder / r[col]).is_file()
        with Image.open(folder / r["image"]) as im:
            assert im.size == (w, h)
        assert _spectra(folder / r["spectra"]).shape == (data["n_spectra"], data["spectrum_length"])
        assert np.isfinite(float(r["dos"]))


def test_expected_shapes_and_split_values(made):
    want = {
        "camera16": ({"n_spectra": 24, "spectrum_length": 1600, "grid": [6, 4]}, ["1"], ["2"], (240, 320)),
        "specimens3": ({"n_spectra": 25, "spectrum_length": 1024, "grid": [5, 5]}, ["A", "B"], ["C"], (240, 320)),
        "tiffcsv": ({"n_spectra": 16, "spectrum_length": 512, "grid": [4, 4]}, ["L1"], ["L2"], (320, 240)),
        "local": ({"n_spectra": 24, "spectrum_length": 1600, "grid": [6, 4]}, ["1"], ["2"], (300, 300)),
        "local_mixed": ({"n_spectra": 24, "spectrum_length": 1600, "grid": [6, 4]}, ["1"], ["2"], (300, 300)),
        "local_grid5": ({"n_spectra": 25, "spectrum_length": 1024, "grid": [5, 5]}, ["1"], ["2"], (240, 320)),
    }
    for name, (data, train, test, frame) in want.items():
        info = made[name][1]
        assert info["data"] == data and info["split"] == {"train_slices": train, "test_slices": test}
        assert V.PROFILES[name].frame == frame
        assert max(frame) <= 320


def test_scale_floors():
    for p in V.PROFILES.values():
        counts = V.scaled_counts(p, 0.001)
        assert all(counts[s] >= 6 for s in p.train_slices) and all(counts[s] >= 3 for s in p.test_slices)
        h, w = V.scaled_frame(p, 0.001)
        assert max(h, w) == V.MIN_LONG_SIDE and (h > w) == (p.frame[0] > p.frame[1])
        total = sum(V.scaled_counts(p, 1.0).values())
        assert 300 <= total <= 600


# ---------------------------------------------------------------------------------------------
# formats per profile
# ---------------------------------------------------------------------------------------------


def test_camera16_formats(made):
    folder, _ = made["camera16"]
    modes = set()
    for r in H.read_manifest_rows(folder):
        path = folder / r["image"]
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as im:
            modes.add(im.mode)
            if im.mode == "I;16":
                a = np.asarray(im)
                assert a.dtype == np.uint16 and a.max() <= 4095 and a.max() > 255  # 12-bit content
        s = np.load(folder / r["spectra"], allow_pickle=False)
        assert s.dtype == np.float32
        assert 100 < s.min() and s.max() < 45000  # raw counts above a ~200 dark offset
    assert modes == {"RGB", "I;16", "P"}


def test_specimens3_formats(made):
    folder, _ = made["specimens3"]
    for r in H.read_manifest_rows(folder):
        assert r["image"].startswith(f"images/{r['slice_id']}/")
        with Image.open(folder / r["image"]) as im:
            assert im.format == "PNG" and im.mode == "I;16"
            assert np.asarray(im).max() <= 4095
        s = np.load(folder / r["spectra"], allow_pickle=False)
        assert s.dtype == np.uint16 and s.shape == (25, 1024)
        assert s.min() >= 250  # dark offset 300 (900 on C)


def test_tiffcsv_formats(made):
    folder, _ = made["tiffcsv"]
    text = (folder / "manifest.csv").read_text()
    assert "\n0000,L1," in text  # numeric ids keep their leading zeros
    modes = set()
    for r in H.read_manifest_rows(folder):
        path = folder / r["image"]
        assert path.suffix == ".tif" and path.read_bytes()[:4] in (b"II*\x00", b"MM\x00*")
        with Image.open(path) as im:
            assert im.format == "TIFF" and getattr(im, "n_frames", 1) == 1
            modes.add(im.mode)
            if im.mode == "I;16":
                assert np.asarray(im).max() > 4095  # full 16-bit range
        raw = (folder / r["spectra"]).read_text()
        assert re.fullmatch(r"(\d+(,\d+)*\n)+", raw), "headerless integer CSV"
        assert h_w_portrait(path)
    assert modes == {"RGB", "L", "I;16"}


def h_w_portrait(path: Path) -> bool:
    with Image.open(path) as im:
        return im.size[1] > im.size[0]


def test_local_formats(made):
    folder, _ = made["local"]
    for r in H.read_manifest_rows(folder):
        with Image.open(folder / r["image"]) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size[0] == im.size[1]
        s = np.load(folder / r["spectra"], allow_pickle=False)
        assert s.dtype == np.float32 and 0.05 < s.min() and s.max() < 1.2


# ---------------------------------------------------------------------------------------------
# labels, determinism
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,mean,std",
    [("camera16", 0.01, 0.004), ("specimens3", 1500.0, 40.0), ("tiffcsv", -3.0, 0.5), ("local", 0.0, 0.2)],
)
def test_label_scale(made, name, mean, std):
    dos = np.array([float(r["dos"]) for r in H.read_manifest_rows(made[name][0])])
    assert abs(dos.mean() - mean) < 0.5 * std
    assert 0.6 * std < dos.std() < 1.4 * std
    if name == "tiffcsv":
        assert (dos < 0).all()


def test_deterministic(tmp_path, made):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    V.make_variant(a, "tiffcsv", seed=0, scale=SCALE)
    V.make_variant(b, "tiffcsv", seed=0, scale=SCALE, workers=2)
    assert _files(a) == _files(b) == _files(made["tiffcsv"][0])
    V.make_variant(c, "tiffcsv", seed=1, scale=SCALE)
    assert _files(c)["spectra/0000.csv"] != _files(a)["spectra/0000.csv"]
    V.make_variant(a, "camera16", seed=0, scale=SCALE)  # rerun into a used folder: old files go
    assert _files(a) == _files(made["camera16"][0])


# ---------------------------------------------------------------------------------------------
# test-slice shifts: re-render a test sample under a train slice (same latents and noise)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,img_gain,img_offset,spec_gain,dark_test",
    [
        ("camera16", (0.70, 0.80), (-0.01, 0.01), (1.25, 1.35), (150, 250)),
        ("specimens3", (0.45, 0.58), (-0.01, 0.01), (1.75, 1.85), (850, 950)),
        ("tiffcsv", (0.97, 1.03), (0.04, 0.06), (0.98, 1.02), (650, 750)),  # 100 dark + 600 baseline
    ],
)
def test_test_slice_shift(made, name, img_gain, img_offset, spec_gain, dark_test):
    folder, info = made[name]
    p = V.PROFILES[name]
    frame = (info["details"]["frame"]["height"], info["details"]["frame"]["width"])
    rows = H.read_manifest_rows(folder)
    seeds = V.sample_seeds(name, 0, SCALE)
    i = next(k for k, r in enumerate(rows) if r["slice_id"] in p.test_slices)
    assert seeds[i][0] == rows[i]["slice_id"]
    ref = V.render_sample(name, seeds[i][1], p.train_slices[0], frame)  # unshifted twin
    assert not p.shifts.get(p.train_slices[0])

    y = _intensity(folder / rows[i]["image"]).ravel()
    x = (ref["image"] @ LUMA).ravel()
    keep = (x > 0.05) & (x < 0.9)
    a, b = np.polyfit(x[keep], y[keep], 1)
    assert img_gain[0] < a < img_gain[1] and img_offset[0] < b < img_offset[1]

    s = _spectra(folder / rows[i]["spectra"]).ravel()
    a, b = np.polyfit(ref["spectra"].ravel(), s, 1)
    assert spec_gain[0] < a < spec_gain[1]
    assert dark_test[0] < b + a * p.dark < dark_test[1]

    # and across the data set: test-slice spectra differ from train-slice spectra in level
    lev = {
        sid: np.mean([_spectra(folder / r["spectra"]).mean() for r in rows if r["slice_id"] == sid]) for sid in p.counts
    }
    train = np.mean([lev[s] for s in p.train_slices])
    assert lev[p.test_slices[0]] / train > {"camera16": 1.15, "specimens3": 1.5, "tiffcsv": 1.05}[name]


def test_spectra_grid_covers_written_frame():
    """Spectrum k follows the second-phase fraction of cell k of the frame actually written."""
    name = "camera16"
    sid, seq = V.sample_seeds(name, 0, 1.0)[0]
    s = V.render_sample(name, seq, sid, V.PROFILES[name].frame)
    assert s["mask"].shape == s["image"].shape[:2] == (240, 320)
    frac = cell_fractions(s["mask"], V.PROFILES[name].grid)
    level = s["spectra"].mean(axis=1)
    assert np.corrcoef(frac, level)[0, 1] < -0.8


# ---------------------------------------------------------------------------------------------
# the local profile
# ---------------------------------------------------------------------------------------------


def test_local_label_is_per_cell_not_global(made):
    folder, info = made["local"]
    lat = H.read_latents(folder)
    n = info["data"]["n_spectra"]
    zt = np.column_stack([lat[f"z_tex_{k:02d}"].astype(float) for k in range(n)])
    zd = np.column_stack([lat[f"z_dip_{k:02d}"].astype(float) for k in range(n)])
    rows = H.read_manifest_rows(folder)
    dos = np.array([float(r["dos"]) for r in rows])
    assert len(dos) >= 40
    # the true per-cell products explain the label
    assert _r2((zt * zd).mean(axis=1, keepdims=True), dos) > 0.95
    # global latent means do not
    assert _r2(np.column_stack([zt.mean(1), zd.mean(1), zt.mean(1) * zd.mean(1)]), dos) < 0.3
    # nor global statistics of the files
    feats = []
    for r in rows:
        img = _intensity(folder / r["image"])
        sp = np.load(folder / r["spectra"], allow_pickle=False).astype(np.float64)
        depth = 1.0 - sp[:, 580:620].mean(1) / (0.5 * (sp[:, 370:400].mean(1) + sp[:, 800:830].mean(1)))
        feats.append([img.mean(), img.std(), sp.mean(), depth.mean()])
    assert _r2(np.array(feats), dos) < 0.35


def test_local_mixed_label_shares_local_and_global_terms(made):
    folder, info = made["local_mixed"]
    lat = H.read_latents(folder)
    n = info["data"]["n_spectra"]
    zt = np.column_stack([lat[f"z_tex_{k:02d}"].astype(float) for k in range(n)])
    zd = np.column_stack([lat[f"z_dip_{k:02d}"].astype(float) for k in range(n)])
    local, phase = (zt * zd).mean(axis=1), lat["z_phase"].astype(float)
    dos = np.array([float(r["dos"]) for r in H.read_manifest_rows(folder)])
    np.testing.assert_allclose(dos, local + phase / np.sqrt(n) + lat["label_noise"].astype(float), atol=1e-9)
    assert 0.2 < _r2(phase[:, None], dos) < 0.8 and 0.2 < _r2(local[:, None], dos) < 0.8


def test_local_cells_carry_their_own_latents(made):
    """Band depth of spectrum k tracks cell k's z_dip; texture of image cell k tracks its z_tex."""
    folder, info = made["local"]
    lat = H.read_latents(folder)
    rows = H.read_manifest_rows(folder)
    grid = info["data"]["grid"]
    n = info["data"]["n_spectra"]
    sp = np.load(folder / rows[0]["spectra"], allow_pickle=False).astype(np.float64)
    depth = 1.0 - sp[:, 580:620].mean(1) / (0.5 * (sp[:, 370:400].mean(1) + sp[:, 800:830].mean(1)))
    zd = np.array([float(lat[f"z_dip_{k:02d}"][0]) for k in range(n)])
    assert np.corrcoef(depth, zd)[0, 1] > 0.9

    # texture at the full 300 px frame (the 0.1-scale images are too small to resolve grains)
    edges, zts = [], []
    for sid, seq in V.sample_seeds("local", 0, SCALE)[:3]:
        s = V.render_sample("local", seq, sid, (300, 300))
        g = s["image"] @ LUMA
        e = np.abs(np.diff(g, axis=0))[:, :-1] + np.abs(np.diff(g, axis=1))[:-1, :]
        for k in range(n):
            r, c = divmod(k, grid[1])
            edges.append(e[r * 50 + 5 : r * 50 + 44, c * 75 + 5 : c * 75 + 69].mean())
            zts.append(s["latents"][f"z_tex_{k:02d}"])
    assert np.corrcoef(edges, zts)[0, 1] < -0.7


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli(tmp_path, capsys):
    V._main([str(tmp_path / "out"), "--profile", "specimens3", "--scale", "0.1", "--seed", "2"])
    out = capsys.readouterr().out
    assert '"profile": "specimens3"' in out
    info = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert info["details"]["seed"] == 2 and info["split"]["test_slices"] == ["C"]
    with pytest.raises(SystemExit):
        V._main([str(tmp_path / "bad"), "--profile", "nope"])


def test_local_option_on_a_non_square_frame():
    """per_cell works on any frame: cells of the written (cropped) frame get their own grain size."""
    import dataclasses

    p = dataclasses.replace(V.PROFILES["local"], frame=(240, 320))
    sid, seq = V.sample_seeds("local", 0, SCALE)[0]
    s = V.render_sample(p, seq, sid, p.frame)
    assert s["image"].shape == (240, 320, 3) and s["mask"].shape == (240, 320)
    g = s["image"] @ LUMA
    e = np.abs(np.diff(g, axis=0))[:, :-1] + np.abs(np.diff(g, axis=1))[:-1, :]
    edges = [e[r * 40 + 4 : r * 40 + 35, c * 80 + 4 : c * 80 + 75].mean() for r in range(6) for c in range(4)]
    zt = [s["latents"][f"z_tex_{k:02d}"] for k in range(24)]
    assert np.corrcoef(edges, zt)[0, 1] < -0.7
