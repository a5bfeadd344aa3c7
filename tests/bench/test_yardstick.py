"""The yardstick: the classical baseline model, drift-robust spectra preprocessing, honest
validation, conformal intervals and the multi-seed comparison."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from metallo.augmentation import Augmentation, augment_batch
from metallo.data.split import split_samples, train_statistics
from metallo.errors import MetalloError
from metallo.models import create_model
from metallo.processing import MetalloProcessor, floored_std
from metallo.spectra import snv
from metallo.uncertainty import conformal_halfwidth, coverage, load_calibration, save_calibration

SHAPE, GRID = (6, 40), (3, 2)


def _stats(spectra: np.ndarray, images: np.ndarray, labels: np.ndarray) -> dict:
    return train_statistics(images, spectra, labels, np.arange(len(labels)))


def _data(n: int = 60, seed: int = 0):
    """Images whose dark-phase fraction and spectra whose band depth carry a known label."""
    rng = np.random.default_rng(seed)
    dark, depth = rng.uniform(0.05, 0.4, n), rng.uniform(0.0, 0.5, n)
    x = np.linspace(0, 1, SHAPE[1])
    band = np.exp(-((x - 0.5) ** 2) / 0.02)
    shape = 1.0 + 0.5 * x - depth[:, None, None] * band  # a sloped reflectance with an absorption dip
    spectra = shape * rng.uniform(900, 1100, (n, 1, 1)) + rng.normal(0, 2, (n, *SHAPE))
    is_dark = rng.uniform(0, 1, (n, 32, 32, 1)) < dark[:, None, None, None]
    grey = np.where(is_dark, 0.2, 0.85) * rng.uniform(0.7, 1.0, (n, 1, 1, 1))  # the camera gain varies too
    images = np.repeat(255 * grey + rng.normal(0, 3, (n, 32, 32, 1)), 3, axis=3).clip(0, 255).astype(np.uint8)
    labels = (2.0 * depth + 1.5 * dark).astype(np.float32)
    return images, spectra.astype(np.float32), labels


def test_snv_removes_gain_and_offset():
    spectra = torch.rand(4, 6, 40) + 0.5
    assert torch.allclose(snv(spectra * 1.8 + 600.0), snv(spectra), atol=1e-3)  # float32 around 600
    out = snv(spectra)
    assert torch.allclose(out.mean(-1), torch.zeros(4, 6), atol=1e-5)
    assert torch.allclose(out.std(-1, unbiased=False), torch.ones(4, 6), atol=1e-4)


def test_processor_snv_is_invariant_to_spectrometer_drift():
    images, spectra, labels = _data()
    processor = MetalloProcessor.from_stats(_stats(spectra, images, labels), image_size=32, resize=32, crop=32)
    assert processor.spectra_norm == "snv"
    raw = torch.from_numpy(spectra[:5])
    assert torch.allclose(processor.spectra(raw * 1.6 + 500.0), processor.spectra(raw), atol=1e-3)
    standard = MetalloProcessor.from_stats(
        _stats(spectra, images, labels), image_size=32, resize=32, crop=32, spectra_norm="standard"
    )
    assert not torch.allclose(standard.spectra(raw * 1.6 + 500.0), standard.spectra(raw), atol=1e-1)


def test_relative_std_floor_keeps_a_dead_channel_finite():
    std = [1.0] * 9 + [0.0]
    assert floored_std(std, 0.01) == [1.0] * 9 + [0.01]
    images, spectra, labels = _data()
    spectra[:, :, 7] = 1000.0  # a saturated channel: constant over the train split
    processor = MetalloProcessor.from_stats(
        _stats(spectra, images, labels), image_size=32, resize=32, crop=32, spectra_norm="standard"
    )
    noisy = torch.from_numpy(spectra[:3]).clone()
    noisy[:, :, 7] += 1.0
    assert processor.spectra(noisy).abs().max() < 1e4


@pytest.mark.parametrize("field, value", [("spectra_norm", "msc"), ("image_norm", "histogram")])
def test_processor_refuses_unknown_normalisation(field, value):
    with pytest.raises(MetalloError, match="preprocess"):
        MetalloProcessor([0.5] * 3, [0.2] * 3, [0.0] * 4, [1.0] * 4, image_size=32, **{field: value})


def test_augmentation_draws_on_the_batch_device_and_keeps_grid_alignment():
    batch = {"pixel_values": torch.zeros(8, 12, 8, 3, dtype=torch.uint8), "spectra": torch.rand(8, *SHAPE)}
    out = augment_batch(batch, GRID, Augmentation(spectra_offset=0.5), torch.Generator().manual_seed(0))
    for key in ("image_gain", "spectra_gain", "spectra_offset"):
        assert out[key].device == batch["spectra"].device and out[key].dtype == torch.float32
    assert out["image_gain"].shape == (8, 3) and out["spectra_offset"].shape == (8,)
    assert (out["spectra_gain"] - 1).abs().max() <= 0.05 and out["spectra_offset"].abs().max() <= 0.5


def test_augmentation_ranges_are_validated():
    with pytest.raises(MetalloError, match="augment_illumination"):
        Augmentation(illumination=1.5)


def test_classical_model_fits_saves_and_predicts(tmp_path):
    from metallo.prediction import load_model, predict_arrays
    from metallo.training.closed_form import dataset_features
    from tests.helpers.arrays import ArrayDataset

    images, spectra, labels = _data(80)
    stats = _stats(spectra[:60], images[:60], labels[:60])
    model = create_model(
        "classical",
        n_spectra=SHAPE[0],
        spectrum_length=SHAPE[1],
        grid=list(GRID),
        image_size=32,
        n_bands=8,
        label_mean=stats["label"]["mean"],
        label_std=stats["label"]["std"],
    )
    processor = MetalloProcessor.from_stats(
        stats, image_size=32, resize=32, crop=32, spectra_norm="none", image_norm="none"
    )
    train = ArrayDataset(tmp_path / "train", images[:60], spectra[:60], labels[:60])
    features = dataset_features(model, processor, train)
    assert features.shape == (60, 16 + 2 + 6 + 1 + 16) and np.isfinite(features).all()
    alpha = model.fit(features, labels[:60])
    assert alpha in model.config.ridge_alphas
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    loaded, loaded_processor = load_model(tmp_path / "model", device="cpu")
    pred, _ = predict_arrays(loaded, loaded_processor, images[60:], spectra[60:])
    r2 = 1 - np.sum((pred - labels[60:]) ** 2) / np.sum((labels[60:] - labels[60:].mean()) ** 2)
    assert r2 > 0.9
    # the spectra features ignore the spectrometer's gain and offset
    drifted, _ = predict_arrays(loaded, loaded_processor, images[60:], spectra[60:] * 1.7 + 300)
    assert np.allclose(drifted, pred, atol=1e-3 * labels.std())


def test_classical_model_ignores_other_models_params_and_refuses_unknown_ones():
    from metallo.training.components import build_model

    params = {
        "data": {"n_spectra": 6, "spectrum_length": 40, "grid": [3, 2]},
        "model": {"name": "classical", "backbone": "resnet18", "hidden_dim": 16, "image_size": 32},
    }
    stats = {"label": {"mean": 0.0, "std": 1.0}}
    assert build_model(params, stats).config.image_size == 32
    params["model"]["hiden_dim"] = 3
    with pytest.raises(MetalloError, match="hiden_dim"):
        build_model(params, stats)


def test_validation_takes_the_same_share_of_every_training_slice():
    import pandas as pd

    samples = pd.DataFrame(
        {"sample_id": [f"s{i}" for i in range(90)], "slice_id": ["A"] * 60 + ["B"] * 20 + ["C"] * 10}
    )
    table = split_samples(
        samples, train_slices=["A", "B"], test_slices=["C"], val_fraction=0.15, seed=3, validation="samples"
    ).table
    val = table[table["split"] == "val"]
    assert val["sample_id"].map(lambda s: "A" if int(s[1:]) < 60 else "B").value_counts().to_dict() == {"A": 9, "B": 3}


def test_conformal_halfwidth_and_coverage():
    residuals = np.arange(1, 20, dtype=float)  # n = 19
    assert conformal_halfwidth(residuals, 0.9) == 18.0  # ceil(20 * 0.9) = 18th smallest
    assert math.isinf(conformal_halfwidth(residuals[:5], 0.9))
    assert coverage(np.array([0.0, 1.0, 5.0]), np.array([-1.0, 0.0, 0.0]), np.array([1.0, 2.0, 4.0])) == 2 / 3
    with pytest.raises(MetalloError, match="between 0 and 1"):
        conformal_halfwidth(residuals, 90)


def test_conformal_intervals_reach_their_level_on_exchangeable_data(tmp_path):
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(200):
        y_val, y_test = rng.normal(size=50), rng.normal(size=50)
        save_calibration(tmp_path, y_val, np.zeros(50))
        half = conformal_halfwidth(load_calibration(tmp_path), 0.9)
        hits.append(coverage(y_test, -half, half))
    assert 0.88 <= float(np.mean(hits)) <= 0.94
    assert json.loads((tmp_path / "calibration.json").read_text())["n"] == 50


def test_compare_overrides_parse_like_dvc_set():
    from metallo.compare import apply_overrides

    params = apply_overrides({"model": {"name": "metallonet"}}, ["model.hidden_dim=256", "model.modalities=[image]"])
    assert params["model"] == {"name": "metallonet", "hidden_dim": 256, "modalities": ["image"]}
    with pytest.raises(MetalloError, match="section.key=value"):
        apply_overrides({}, ["hidden_dim"])


def test_metallonet_starts_from_the_classical_baseline_and_needs_raw_inputs(tmp_path):
    from metallo.training.closed_form import initialise_classical_branch
    from tests.helpers.arrays import ArrayDataset

    images, spectra, labels = _data(40)
    stats = _stats(spectra, images, labels)
    model = create_model(
        "metallonet",
        n_spectra=SHAPE[0],
        spectrum_length=SHAPE[1],
        grid=list(GRID),
        image_size=32,
        hidden_dim=16,
        classical_branch=True,
        label_mean=stats["label"]["mean"],
        label_std=stats["label"]["std"],
    ).eval()
    processor = MetalloProcessor.from_stats(stats, image_size=32, resize=32, crop=32, raw_copies=True)
    train = ArrayDataset(tmp_path / "train", images, spectra, labels)
    initialise_classical_branch(model, processor, train)
    batch = processor({"pixel_values": torch.from_numpy(images[:8]), "spectra": torch.from_numpy(spectra[:8])})
    assert set(batch) == {"pixel_values", "spectra", "raw_pixel_values", "raw_spectra"}
    assert 0.0 <= float(batch["raw_pixel_values"].min()) and float(batch["raw_pixel_values"].max()) <= 1.0
    with torch.no_grad():
        predictions = model(**batch).predictions
        ridge = model.classical_head(model.classical_branch(batch["raw_pixel_values"], batch["raw_spectra"]))
    expected = ridge.squeeze(-1) * model.config.label_std + model.config.label_mean
    assert torch.allclose(predictions, expected, atol=1e-5)  # the deep readout starts at zero
    with pytest.raises(ValueError, match="raw_pixel_values"):
        model(pixel_values=batch["pixel_values"], spectra=batch["spectra"])


@pytest.mark.parametrize("profile", ["camera16", "specimens3", "tiffcsv", "local"])
def test_foreign_data_runs_end_to_end_with_only_shape_and_split_params(tmp_path, profile):
    """A data set from another camera and spectrometer, only data:/split:/ingest.raw_dir set, as a user would."""
    import yaml

    from metallo.compare import apply_overrides, run_compare
    from metallo.data.variants import make_variant
    from tests.helpers.project import REPO

    info = make_variant(tmp_path / "raw", profile, scale=0.1)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params = apply_overrides(
        params,
        [
            f"ingest.raw_dir={tmp_path / 'raw'}",
            f"data.n_spectra={info['data']['n_spectra']}",
            f"data.spectrum_length={info['data']['spectrum_length']}",
            f"data.grid={info['data']['grid']}",
            f"split.train_slices={info['split']['train_slices']}",
            f"split.test_slices={info['split']['test_slices']}",
            "convert.crop=48",
            "convert.workers=1",
            "model.image_size=48",
        ],
    )  # small images keep the test fast
    result = run_compare(params, models=["classical"], seeds=[0, 1], work_dir=tmp_path / "runs")
    assert [run["seed"] for run in result["runs"]] == [0, 1]
    for run in result["runs"]:
        assert math.isfinite(run["r2"]) and math.isfinite(run["rmse"])
        for metric in ("r2", "rmse", "mae"):  # the same split and the same fit, up to float32 rounding
            assert run["baselines"]["classical"][metric] == pytest.approx(run[metric], rel=1e-5)
    summary = result["summary"]
    assert set(summary) == {"classical", "classical baseline", "mean baseline"}
    assert summary["classical"]["r2"]["n"] == 2 and summary["classical"]["r2"]["sd"] is not None


def test_per_image_normalisation_removes_the_illumination_level():
    processor = MetalloProcessor([0.4] * 3, [0.2] * 3, [0.0] * 4, [1.0] * 4, image_size=16, image_norm="per_image")
    pixels = torch.randint(20, 250, (2, 16, 16, 3), dtype=torch.uint8)
    darker = processor.images(pixels, gain=torch.full((2, 1), 0.6))
    assert torch.allclose(processor.images(pixels), darker, atol=0.05)  # up to uint8 rounding of the quantile
