"""The demo data: the generative model (metallo.data.generative) and the synthesize stage. Tiny sizes, fast."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metallo.data import generative as G
from metallo.data import synthesize as S
from tests.helpers import data as H

SMALL = dict(samples_per_slice={"1": 6, "2": 3}, image_size=64, spectrum_length=200)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("small") / "raw"
    summary = H.synthesize_raw(out, seed=3, **SMALL)
    return out, summary


@pytest.fixture(scope="module")
def stats_run(tmp_path_factory):
    """~40 samples at a very small size, for the statistical checks."""
    out = tmp_path_factory.mktemp("stats") / "raw"
    H.synthesize_raw(out, seed=11, samples_per_slice={"1": 30, "2": 10}, image_size=48, spectrum_length=240)
    return out


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------


def test_deterministic_across_runs_and_workers(tmp_path, small_run):
    ref, _ = small_run
    a, b = tmp_path / "a", tmp_path / "b"
    S.synthesize(a, seed=3, workers=1, progress=False, **SMALL)
    S.synthesize(b, seed=3, workers=2, progress=False, **SMALL)
    fa, fb, fr = _files(a), _files(b), _files(ref)
    assert fa.keys() == fb.keys() == fr.keys()
    for k in fa:
        assert fa[k] == fb[k] == fr[k], k


def test_different_seed_differs(tmp_path, small_run):
    ref, _ = small_run
    H.synthesize_raw(tmp_path / "c", seed=4, **SMALL)
    assert (tmp_path / "c" / "images" / "s0000.png").read_bytes() != (ref / "images" / "s0000.png").read_bytes()


# ---------------------------------------------------------------------------------------------
# contract
# ---------------------------------------------------------------------------------------------


def test_manifest_contract(small_run):
    out, summary = small_run
    text = (out / "manifest.csv").read_bytes()
    assert b"\r" not in text
    assert text.splitlines()[0] == b"sample_id,slice_id,image,spectra,dos"
    rows = H.read_manifest_rows(out)
    assert len(rows) == 9
    ids = [r["sample_id"] for r in rows]
    assert ids == [f"s{i:04d}" for i in range(9)]  # zero-padded strings, in sample order
    assert len(set(ids)) == len(ids)
    assert [r["slice_id"] for r in rows] == ["1"] * 6 + ["2"] * 3
    root = out.resolve()
    for r in rows:
        for col in ("image", "spectra"):
            rel = Path(r[col])
            assert not rel.is_absolute()
            p = (out / rel).resolve()
            assert p.is_relative_to(root) and p.is_file()
        assert r["image"] == f"images/{r['sample_id']}.png"
        assert r["spectra"] == f"spectra/{r['sample_id']}.npy"
        float(r["dos"])
    assert summary["n_samples"] == 9 and summary["counts"] == {"1": 6, "2": 3}
    dos = np.array([float(r["dos"]) for r in rows])
    assert summary["dos_mean"] == pytest.approx(dos.mean(), abs=1e-5)
    assert not list(out.rglob("*.tmp"))


def test_shapes_and_dtypes(small_run):
    out, _ = small_run
    for r in H.read_manifest_rows(out):
        with Image.open(out / r["image"]) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (64, 64)
        sp = np.load(out / r["spectra"], allow_pickle=False)
        assert sp.dtype == np.float32 and sp.shape == (24, 200)
        assert np.isfinite(sp).all() and 0.0 < sp.mean() < 1.0


def test_custom_grid_and_sizes(tmp_path):
    out = tmp_path / "g"
    H.synthesize_raw(out, samples_per_slice={"1": 2}, image_size=30, n_spectra=6, spectrum_length=50, grid=(3, 2))
    rows = H.read_manifest_rows(out)
    assert len(rows) == 2
    assert np.load(out / rows[0]["spectra"]).shape == (6, 50)
    with Image.open(out / rows[0]["image"]) as im:
        assert im.size == (30, 30)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(grid=(5, 4)),  # 20 != 24
        dict(n_spectra=12),  # 6*4 != 12
        dict(samples_per_slice={"1": 0}),
        dict(samples_per_slice={"1": -3}),
        dict(samples_per_slice={}),
        dict(samples_per_slice={"7": 3}),
        dict(image_size=0),
        dict(spectrum_length=0),
    ],
)
def test_validation(tmp_path, kwargs):
    args = dict(samples_per_slice={"1": 1}, image_size=32, spectrum_length=20, workers=1, progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError):
        S.synthesize(tmp_path / "x", **args)
    assert not (tmp_path / "x" / "manifest.csv").exists()


def test_stale_outputs_removed_and_other_files_kept(tmp_path):
    out = tmp_path / "raw"
    (out / "images").mkdir(parents=True)
    (out / "spectra").mkdir()
    (out / "images" / "zzz_old.png").write_bytes(b"old")
    (out / "spectra" / "zzz_old.npy").write_bytes(b"old")
    (out / "notes.txt").write_text("keep me")
    H.synthesize_raw(out, samples_per_slice={"1": 2}, image_size=32, spectrum_length=20)
    assert not (out / "images" / "zzz_old.png").exists()
    assert not (out / "spectra" / "zzz_old.npy").exists()
    assert (out / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in (out / "images").iterdir()) == ["s0000.png", "s0001.png"]


# ---------------------------------------------------------------------------------------------
# generative model
# ---------------------------------------------------------------------------------------------


def test_written_files_match_in_memory_generator(small_run):
    """The files on disk are exactly what generate_sample() produces for that sample's seed."""
    out, _ = small_run
    rows = H.read_manifest_rows(out)
    seqs = np.random.SeedSequence(3).spawn(len(rows))
    for i in (0, 7):
        lat, img, spec, _ = G.generate_sample(seqs[i], rows[i]["slice_id"], 64, 200, (6, 4))
        assert np.array_equal(np.asarray(Image.open(out / rows[i]["image"])), img)
        assert np.array_equal(np.load(out / rows[i]["spectra"]), spec)
        assert float(rows[i]["dos"]) == pytest.approx(lat.dos, abs=1e-6)


def test_label_follows_documented_equation(stats_run):
    lat = H.read_latents(stats_run)
    y = lat["dos"].astype(float)
    zg = (np.log(lat["grain_size"].astype(float)) - G.LOG_GRAIN_MOMENTS[0]) / G.LOG_GRAIN_MOMENTS[1]
    zc = (lat["composition"].astype(float) - 0.5) / np.sqrt(1 / 12)
    zp = (lat["phase_fraction"].astype(float) - 0.2) / (0.3 / np.sqrt(12))
    np.testing.assert_allclose(zg, lat["z_grain"].astype(float), atol=1e-9)
    A = np.column_stack([np.ones_like(y), zg, zc, zp])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    r2 = 1 - np.var(y - A @ coef) / np.var(y)
    assert r2 > 0.97
    np.testing.assert_allclose(coef, [2.0, 0.9, 0.7, 0.3], atol=0.06)
    # manifest dos == latents dos (6 decimals)
    man = H.read_manifest_rows(stats_run)
    np.testing.assert_allclose([float(r["dos"]) for r in man], y, atol=1e-6)


def test_variance_split_between_modalities():
    """Image-visible latents (grain size, phase) explain ~65 %, spectra-visible ones (composition, phase) ~42 %."""
    seqs = np.random.SeedSequence(123).spawn(3000)
    L = [G.draw_latents(G._substream(q, 0)) for q in seqs]
    y = np.array([lat.dos for lat in L])
    lg = np.log([lat.image.grain_size for lat in L])
    ph = np.array([lat.image.phase_fraction for lat in L])
    c = np.array([lat.composition for lat in L])

    def r2(*X):
        A = np.column_stack([np.ones_like(y), *X])
        b, *_ = np.linalg.lstsq(A, y, rcond=None)
        return 1 - np.var(y - A @ b) / np.var(y)

    assert 0.58 < r2(lg, ph) < 0.72
    assert 0.35 < r2(c, ph) < 0.49
    assert r2(lg, c, ph) > 0.99


def test_band_depth_tracks_composition(stats_run):
    lat = H.read_latents(stats_run)
    lam = G.wavelengths(240)
    idx = lambda v: int(np.argmin(np.abs(lam - v)))  # noqa: E731
    a, b, k = idx(520), idx(720), idx(620)
    depths = []
    for sid in lat["sample_id"]:
        m = np.load(stats_run / "spectra" / f"{sid}.npy").mean(axis=0)
        cont = m[a] + (m[b] - m[a]) * (lam[k] - lam[a]) / (lam[b] - lam[a])
        depths.append(1 - m[k] / cont)
    assert abs(np.corrcoef(depths, lat["composition"].astype(float))[0, 1]) > 0.9


def test_image_does_not_depend_on_composition(monkeypatch):
    seq = np.random.SeedSequence(5).spawn(1)[0]
    orig = G.draw_latents
    outs = {}
    for c in (0.0, 1.0):
        monkeypatch.setattr(G, "draw_latents", lambda rng, c=c: dataclasses.replace(orig(rng), composition=c))
        outs[c] = G.generate_sample(seq, "1", 64, 200, (6, 4))
    (_, img0, sp0, _), (_, img1, sp1, _) = outs[0.0], outs[1.0]
    assert np.array_equal(img0, img1)
    assert not np.allclose(sp0, sp1)
    # deeper band with more composition
    lam = G.wavelengths(200)
    k = int(np.argmin(np.abs(lam - 620)))
    assert sp1[:, k].mean() < sp0[:, k].mean() - 0.05


def test_grain_size_visible_in_image_after_downsampling():
    """Smaller grains -> more boundary edges, still measurable after the 300 -> 128 resize the demo uses."""
    base = G.draw_latents(np.random.default_rng(0)).image
    edge_energy, n_grains = [], []
    for d in (12.0, 25.0, 60.0):
        lat = dataclasses.replace(base, grain_size=d, phase_fraction=0.05, noise_sigma=0.015)
        img, _, n = G.render_micrograph(lat, np.random.default_rng(1), 300)
        small = np.asarray(Image.fromarray(img).resize((128, 128), Image.BILINEAR), dtype=float).mean(axis=2)
        edge_energy.append(np.abs(np.diff(small, axis=0)).mean() + np.abs(np.diff(small, axis=1)).mean())
        n_grains.append(n)
    assert n_grains[0] > n_grains[1] > n_grains[2]
    assert edge_energy[0] > edge_energy[1] > edge_energy[2]
    assert edge_energy[0] > 1.5 * edge_energy[2]


def test_cell_fractions_row_major():
    mask = np.zeros((60, 40), dtype=bool)
    mask[0:10, 10:20] = True  # grid (6, 4): row 0, col 1 -> k = 1
    mask[50:60, 30:40] = True  # row 5, col 3 -> k = 23
    f = G.cell_fractions(mask, (6, 4))
    expected = np.zeros(24)
    expected[[1, 23]] = 1.0
    np.testing.assert_array_equal(f, expected)


def test_local_spectra_track_local_phase_fraction():
    lat = G.draw_latents(np.random.default_rng(2))
    lat = dataclasses.replace(lat, image=dataclasses.replace(lat.image, phase_fraction=0.3, gradient_angle=0.0))
    img, mask, _ = G.render_micrograph(lat.image, np.random.default_rng(3), 96)
    frac = G.cell_fractions(mask, (6, 4))
    assert frac.max() - frac.min() > 0.1  # the gradient makes the local fractions differ
    # gradient along +x (angle 0): right columns have more second phase
    assert frac.reshape(6, 4)[:, 3].mean() > frac.reshape(6, 4)[:, 0].mean()
    spec = G.render_spectra(frac, lat.composition, np.random.default_rng(4), 200)
    assert np.corrcoef(frac, spec.mean(axis=1))[0, 1] < -0.9
    # the image agrees: cells with more second phase are darker
    grey = img.astype(float).mean(axis=2)
    cell_grey = np.array(
        [
            grey[
                G.cell_bounds(96, 6, k // 4)[0] : G.cell_bounds(96, 6, k // 4)[1],
                G.cell_bounds(96, 4, k % 4)[0] : G.cell_bounds(96, 4, k % 4)[1],
            ].mean()
            for k in range(24)
        ]
    )
    assert np.corrcoef(frac, cell_grey)[0, 1] < -0.8


def test_slice_two_differs():
    seq = np.random.SeedSequence(9).spawn(1)[0]
    _, img1, sp1, _ = G.generate_sample(seq, "1", 64, 200, (6, 4))
    _, img2, sp2, _ = G.generate_sample(seq, "2", 64, 200, (6, 4))
    ratio = img2.astype(float).mean() / img1.astype(float).mean()
    assert 0.88 < ratio < 0.97
    assert sp2.mean() > sp1.mean() * 1.02


# ---------------------------------------------------------------------------------------------
# DVC stage wrapper
# ---------------------------------------------------------------------------------------------


def _stage_params(**synth):
    cfg = {"seed": 1, "samples_per_slice": {"1": 2, "2": 1}, "image_size": 32}
    cfg.update(synth)
    return {"data": {"n_spectra": 6, "spectrum_length": 30, "grid": [3, 2]}, "synthesize": cfg}


def test_run_synthesize_reads_params(tmp_path):
    from metallo.layout import Paths

    paths = Paths(synthetic=tmp_path / "data" / "synthetic")
    summary = S.run_synthesize(_stage_params(workers=1), paths)
    assert summary["counts"] == {"1": 2, "2": 1}
    rows = H.read_manifest_rows(paths.synthetic)
    assert [r["slice_id"] for r in rows] == ["1", "1", "2"]
    assert np.load(paths.synthetic / rows[0]["spectra"]).shape == (6, 30)


def test_run_synthesize_errors_are_user_errors(tmp_path):
    from metallo.errors import MetalloError
    from metallo.layout import Paths

    paths = Paths(synthetic=tmp_path / "syn")
    with pytest.raises(MetalloError, match="unknown"):
        S.run_synthesize(_stage_params(sead=3), paths)
    with pytest.raises(MetalloError, match="slice"):
        S.run_synthesize(_stage_params(samples_per_slice={"3": 2}), paths)
