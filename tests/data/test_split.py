"""Split: sizes, seeds, validation specimens, train-only statistics, and the synthesize -> ingest -> convert
-> split chain reproduced byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metallo.data.convert import run_convert
from metallo.data.ingest import run_ingest
from metallo.data.split import run_split, split_samples, train_statistics
from metallo.errors import MetalloError
from metallo.layout import Paths
from tests.helpers import data as H

SHAPE = H.SHAPE
OUTPUTS = ("images.npy", "spectra.npy", "samples.parquet", "convert.json")


# ------------------------------------------------------------------------------------------------
# split
# ------------------------------------------------------------------------------------------------


def _samples(n1: int = 40, n2: int = 10, extra: dict | None = None) -> pd.DataFrame:
    slices = ["1"] * n1 + ["2"] * n2
    for slice_id, n in (extra or {}).items():
        slices += [slice_id] * n
    return pd.DataFrame(
        {
            "sample_id": [f"s{i:03d}" for i in range(len(slices))],
            "slice_id": slices,
            "dos": np.linspace(0.0, 3.0, len(slices)),
        }
    )


def test_split_sizes_and_disjointness():
    result = split_samples(_samples(), train_slices=["1"], test_slices=["2"], val_fraction=0.05, seed=0)
    assert result.counts == {"train": 38, "val": 2, "test": 10, "unassigned": 0, "val_specimens": 0}
    table = result.table
    assert table.sample_id.is_unique and table["index"].is_unique
    assert table["index"].tolist() == list(range(50))
    assert set(table.loc[table.split == "test", "index"]) == set(range(40, 50))
    assert set(table.loc[table.split != "test", "index"]) == set(range(40))
    assert table["index"].dtype == np.int64


def test_split_is_seeded():
    samples = _samples()
    a = split_samples(samples, train_slices=["1"], test_slices=["2"], val_fraction=0.2, seed=7).table
    b = split_samples(samples, train_slices=["1"], test_slices=["2"], val_fraction=0.2, seed=7).table
    pd.testing.assert_frame_equal(a, b)
    val_sets = {
        frozenset(
            split_samples(samples, train_slices=["1"], test_slices=["2"], val_fraction=0.2, seed=seed)
            .table.query("split == 'val'")
            .sample_id
        )
        for seed in range(5)
    }
    assert len(val_sets) > 1
    other = split_samples(samples, train_slices=["1"], test_slices=["2"], val_fraction=0.2, seed=8).table
    assert set(other.query("split == 'val'").sample_id) != set(a.query("split == 'val'").sample_id)
    assert set(other.query("split == 'test'").sample_id) == set(a.query("split == 'test'").sample_id)
    assert all(len(v) == 8 for v in val_sets)


@pytest.mark.parametrize("n1, fraction, n_val", [(10, 0.05, 1), (1, 0.05, 0), (40, 0.0, 0), (20, 0.5, 10), (3, 0.2, 1)])
def test_split_val_count(n1, fraction, n_val):
    result = split_samples(_samples(n1, 2), train_slices=["1"], test_slices=["2"], val_fraction=fraction, seed=0)
    assert result.counts["val"] == n_val and result.counts["train"] == n1 - n_val


def test_split_slice_ids_compare_as_strings():
    samples = _samples(6, 3)
    result = split_samples(samples, train_slices=[1], test_slices=[2], val_fraction=0.0, seed=0)
    assert result.counts == {"train": 6, "val": 0, "test": 3, "unassigned": 0, "val_specimens": 0}


def test_unassigned_slices_are_reported_not_dropped_silently():
    result = split_samples(
        _samples(10, 4, extra={"3": 5, "x": 2}), train_slices=["1"], test_slices=["2"], val_fraction=0.1, seed=0
    )
    assert result.unassigned == {"3": 5, "x": 2}
    assert result.counts == {"train": 9, "val": 1, "test": 4, "unassigned": 7, "val_specimens": 0}
    assert sum(result.counts.values()) == 21
    assert result.table["index"].max() < 14


def _specimens() -> pd.DataFrame:
    return _samples(20, 10, extra={"A": 12, "B": 8})  # slices 1, 2, A, B


def test_validation_holds_out_the_last_training_specimen_when_there_are_several():
    result = split_samples(_specimens(), train_slices=["1", "A", "B"], test_slices=["2"], val_fraction=0.2, seed=0)
    slices = _specimens()["slice_id"].to_numpy()
    by_split = {name: set(slices[result.table.loc[result.table.split == name, "index"]]) for name in ("train", "val")}
    assert by_split == {"train": {"1", "A"}, "val": {"B"}}  # a whole specimen, not val_fraction of each
    assert result.counts == {"train": 32, "val": 8, "test": 10, "unassigned": 0, "val_specimens": 1}
    assert result.val_slices == ["B"] and result.validation == "held-out specimen B"


def test_validation_specimens_can_be_named_and_samples_still_chosen():
    kwargs = dict(train_slices=["1", "A", "B"], test_slices=["2"], val_fraction=0.25, seed=0)
    named = split_samples(_specimens(), **kwargs, val_slices=["1", "A"])
    assert named.val_slices == ["1", "A"] and named.counts["val"] == 32 and named.counts["train"] == 8
    samples = split_samples(_specimens(), **kwargs, validation="samples")
    assert samples.val_slices == [] and samples.counts["val"] == 5 + 3 + 2  # a quarter of every slice
    assert samples.validation == "held-out samples of the training specimens"


def test_one_training_specimen_falls_back_to_samples_unless_specimens_are_demanded():
    auto = split_samples(_samples(), train_slices=["1"], test_slices=["2"], val_fraction=0.1, seed=0)
    assert auto.val_slices == [] and auto.counts["val"] == 4
    with pytest.raises(MetalloError, match="split.validation: specimen needs two or more training slices"):
        split_samples(
            _samples(), train_slices=["1"], test_slices=["2"], val_fraction=0.1, seed=0, validation="specimen"
        )


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(validation="slices"), r"split.validation must be one of auto, specimen, samples"),
        (dict(val_slices=["2"]), r"split.val_slices \['2'\] are not in split.train_slices"),
        (dict(val_slices=["1", "A", "B"]), r"leave no training slice"),
    ],
)
def test_validation_errors_name_the_param(kwargs, pattern):
    with pytest.raises(MetalloError, match=pattern):
        split_samples(_specimens(), train_slices=["1", "A", "B"], test_slices=["2"], val_fraction=0.1, seed=0, **kwargs)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(train_slices=["1", "2"], test_slices=["2"]), r"both split.train_slices and split.test_slices"),
        (dict(train_slices=["1"], test_slices=["1"]), r"\['1'\] are in both"),
        (dict(train_slices=["9"], test_slices=["2"]), r"no training rows"),
        (dict(train_slices=["1"], test_slices=["2"], val_fraction=1.0), r"val_fraction"),
        (dict(train_slices=["1"], test_slices=["2"], val_fraction=-0.1), r"val_fraction"),
    ],
)
def test_split_errors(kwargs, pattern):
    kwargs = {"val_fraction": 0.05, "seed": 0, **kwargs}
    with pytest.raises(MetalloError, match=pattern):
        split_samples(_samples(), **kwargs)


def _processed(paths: Paths, n1=12, n2=5, n3=2, seed=0):
    """Hand-written convert outputs: random images/spectra, slices 1, 2 and an unassigned 3."""
    rng = np.random.default_rng(seed)
    n = n1 + n2 + n3
    paths.processed.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    spectra = rng.normal(0.5, 0.2, (n, *SHAPE)).astype(np.float32)
    np.save(paths.processed / "images.npy", images)
    np.save(paths.processed / "spectra.npy", spectra)
    table = pd.DataFrame(
        {
            "index": np.arange(n, dtype=np.int64),
            "sample_id": [f"s{i}" for i in range(n)],
            "slice_id": ["1"] * n1 + ["2"] * n2 + ["3"] * n3,
            "dos": rng.normal(2.0, 1.0, n),
        }
    )
    table.to_parquet(paths.processed / "samples.parquet", index=False)
    return images, spectra, table


def _expected_stats(images, spectra, labels, train):
    pixels = images[train].reshape(-1, 3).astype(np.float64) / 255.0
    values = spectra[train].reshape(-1, SHAPE[1]).astype(np.float64)
    y = np.asarray(labels, dtype=np.float64)[train]
    return {
        "image_mean": pixels.mean(0),
        "image_std": pixels.std(0),
        "spectra_mean": values.mean(0),
        "spectra_std": values.std(0),
        "global_mean": values.mean(),
        "global_std": values.std(),
        "label_mean": y.mean(),
        "label_std": y.std(),
    }


def test_run_split_writes_outputs_and_train_only_stats(tmp_path):
    paths = H.make_paths(tmp_path)
    images, spectra, table = _processed(paths)
    params = H.make_params(tmp_path / "raw", val_fraction=0.25, seed=3)
    counts = run_split(params, paths)
    assert counts == {"train": 9, "val": 3, "test": 5, "unassigned": 2, "val_specimens": 0}
    assert json.loads((paths.metrics / "split.json").read_text()) == counts

    split = pd.read_parquet(paths.split / "split.parquet")
    assert list(split.columns) == ["sample_id", "split", "index"]
    assert (split.sample_id == table.sample_id.iloc[split["index"]].to_numpy()).all()
    train = np.sort(split.loc[split.split == "train", "index"].to_numpy())
    assert len(train) == 9 and set(train) <= set(range(12))

    stats = json.loads(paths.stats.read_text())
    expected = _expected_stats(images, spectra, table.dos, train)
    assert stats["n_train"] == 9
    np.testing.assert_allclose(stats["image"]["mean"], expected["image_mean"], rtol=1e-10)
    np.testing.assert_allclose(stats["image"]["std"], expected["image_std"], rtol=1e-8)
    np.testing.assert_allclose(stats["spectra"]["mean"], expected["spectra_mean"], rtol=1e-10)
    np.testing.assert_allclose(stats["spectra"]["std"], expected["spectra_std"], rtol=1e-7)
    assert stats["spectra"]["global_mean"] == pytest.approx(expected["global_mean"], rel=1e-10)
    assert stats["spectra"]["global_std"] == pytest.approx(expected["global_std"], rel=1e-7)
    assert stats["label"]["mean"] == pytest.approx(expected["label_mean"], rel=1e-12)
    assert stats["label"]["std"] == pytest.approx(expected["label_std"], rel=1e-12)
    # not the statistics of all rows
    everything = _expected_stats(images, spectra, table.dos, np.arange(len(table)))
    assert stats["label"]["mean"] != pytest.approx(everything["label_mean"], rel=1e-6)


def test_stats_ignore_val_and_test_rows(tmp_path):
    paths = H.make_paths(tmp_path)
    images, spectra, table = _processed(paths)
    params = H.make_params(tmp_path / "raw", val_fraction=0.25, seed=3)
    run_split(params, paths)
    stats_before = paths.stats.read_bytes()
    split = pd.read_parquet(paths.split / "split.parquet")
    held_out = split.loc[split.split != "train", "index"].to_numpy()
    unassigned = np.setdiff1d(np.arange(len(table)), split["index"])
    train_row = int(split.loc[split.split == "train", "index"].iloc[0])

    # change every val/test/unassigned image, spectrum and label: the statistics must not move
    changed_images, changed_spectra, changed_table = images.copy(), spectra.copy(), table.copy()
    for row in np.concatenate([held_out, unassigned]):
        changed_images[row] = 255 - changed_images[row]
        changed_spectra[row] = changed_spectra[row] * 10 + 3
        changed_table.loc[row, "dos"] = 1e6
    np.save(paths.processed / "images.npy", changed_images)
    np.save(paths.processed / "spectra.npy", changed_spectra)
    changed_table.to_parquet(paths.processed / "samples.parquet", index=False)
    run_split(params, paths)
    assert paths.stats.read_bytes() == stats_before

    # ... while changing a single train image does
    changed_images[train_row] = 255 - changed_images[train_row]
    np.save(paths.processed / "images.npy", changed_images)
    run_split(params, paths)
    assert paths.stats.read_bytes() != stats_before


def test_train_statistics_chunking_does_not_matter():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (30, 4, 4, 3), dtype=np.uint8)
    spectra = rng.normal(size=(30, *SHAPE)).astype(np.float32)
    labels = rng.normal(size=30)
    train = rng.permutation(30)[:20]
    a = train_statistics(images, spectra, labels, train, chunk=3)
    b = train_statistics(images, spectra, labels, train, chunk=64)
    assert a["n_train"] == b["n_train"] == 20
    np.testing.assert_allclose(a["image"]["mean"], b["image"]["mean"], rtol=1e-12)
    np.testing.assert_allclose(a["spectra"]["std"], b["spectra"]["std"], rtol=1e-9)
    assert a["label"] == b["label"]
    one = train_statistics(images, spectra, labels, train[:1])
    assert one["label"]["std"] == 1.0


# ------------------------------------------------------------------------------------------------
# synthesize -> ingest -> convert -> split, twice: byte-identical
# ------------------------------------------------------------------------------------------------


def _chain(root: Path, convert_workers: int) -> Paths:
    paths = H.make_paths(root)
    H.synthesize_raw(
        paths.synthetic,
        seed=5,
        samples_per_slice={"1": 10, "2": 4},
        image_size=48,
        n_spectra=6,
        spectrum_length=40,
        grid=(3, 2),
    )
    params = H.make_params(
        paths.synthetic,
        on_error="fail",
        shape=(6, 40),
        grid=(3, 2),
        resize=40,
        crop=32,
        workers=convert_workers,
        val_fraction=0.05,
        seed=0,
    )
    assert run_ingest(params, paths) == {"total": 14, "accepted": 14, "rejected": 0}
    assert run_convert(params, paths) == 14
    assert run_split(params, paths) == {"train": 9, "val": 1, "test": 4, "unassigned": 0, "val_specimens": 0}
    return paths


def test_data_chain_is_deterministic(tmp_path):
    a = _chain(tmp_path / "a", convert_workers=1)
    _chain(tmp_path / "b", convert_workers=2)
    for folder in ("synthetic", "interim", "processed", "split", "metrics"):
        digests_a = H.tree_digests(tmp_path / "a" / folder)
        digests_b = H.tree_digests(tmp_path / "b" / folder)
        assert digests_a, folder
        assert digests_a == digests_b, folder
    assert sorted(H.tree_digests(tmp_path / "a" / "processed")) == sorted(OUTPUTS)
    assert json.loads((a.processed / "convert.json").read_text()) == {
        "fit": "full",
        "resize": 40,
        "crop": 32,
        "bit_depth": 16,
        "bit_depth_param": "auto",
        "images_16bit": 0,
        "max_value_16bit": None,
        "grid": [3, 2],
    }
    assert sorted(H.tree_digests(tmp_path / "a" / "split")) == ["split.parquet", "stats.json"]
    assert sorted(H.tree_digests(tmp_path / "a" / "metrics")) == ["ingest.json", "split.json"]
    images = np.load(a.processed / "images.npy")
    assert images.shape == (14, 32, 32, 3) and images.std() > 0
    split = pd.read_parquet(a.split / "split.parquet")
    samples = pd.read_parquet(a.processed / "samples.parquet")
    assert set(split.loc[split.split == "test", "sample_id"]) == set(samples.loc[samples.slice_id == "2", "sample_id"])


def test_split_after_an_interrupted_convert_says_what_to_run(tmp_path):
    paths = H.make_paths(tmp_path)
    paths.processed.mkdir(parents=True)
    params = {"split": {"train_slices": ["1"], "test_slices": ["2"], "val_fraction": 0.2, "seed": 0}}
    with pytest.raises(MetalloError, match="convert stage has not finished"):
        run_split(params, paths)
    pd.DataFrame({"sample_id": ["a", "b"]}).to_parquet(paths.processed / "samples.parquet")
    np.save(paths.processed / "images.npy", np.zeros((3, 4, 4, 3), np.uint8))
    np.save(paths.processed / "spectra.npy", np.zeros((2, 6, 20), np.float32))
    with pytest.raises(MetalloError, match="different runs"):
        run_split(params, paths)
