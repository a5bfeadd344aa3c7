"""Issue 15 without a pipeline: figures, the image processor, the dvclive series and the progress output."""
from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from metallo import figures
from tests.conftest import REPO, project_env


@pytest.fixture
def captured(monkeypatch):
    """Keep the figures instead of writing PNGs: ``figures._save`` returns the Figure."""
    monkeypatch.setattr(figures, "_save", lambda fig, path: fig)


def images(n: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------
# figures (goal 5)
# ------------------------------------------------------------------------------------------------

def test_attention_maps_share_one_0_to_1_scale_with_a_colour_bar(captured):
    maps = np.stack([np.full((4, 4), 0.53), np.linspace(0.2, 0.99, 16).reshape(4, 4)])
    fig = figures.attention_montage(images(2), maps, np.array([0.007, 0.039]), np.array([0.0123, 0.0351]),
                                    ["a", "b"], "unused.png", model_image_size=128)
    overlays = [ax.images[1] for ax in fig.axes if len(ax.images) == 2]
    assert len(overlays) == 2
    assert {(im.norm.vmin, im.norm.vmax) for im in overlays} == {(0.0, 1.0)}  # one scale: 0.53 is not "black"
    assert all(im.get_interpolation() == "nearest" for im in overlays)
    colour_bars = [ax for ax in fig.axes if ax.get_ylabel() == "spatial attention weight (0–1)"]
    assert len(colour_bars) == 1
    assert "4×4 feature map" in fig._suptitle.get_text() and "32 px of the 128-px model input" in fig._suptitle.get_text()
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "a\ntrue 0.007 · pred 0.0123" in titles and "b\ntrue 0.039 · pred 0.0351" in titles  # .3g, not 0.01


def test_cell_montage_captions_fit_small_labels(captured):
    contributions = np.random.default_rng(1).normal(0, 0.01, (2, 3, 2))
    fig = figures.cell_contribution_montage(images(2), contributions, [(0, 0, 1, 1)] * 2, np.array([0.007, 0.039]),
                                            np.array([0.0123, 0.0351]), ["a", "b"], "unused.png")
    assert "a\ntrue 0.007 · pred 0.0123" in [ax.get_title() for ax in fig.axes]
    assert any("label units" in ax.get_ylabel() for ax in fig.axes)  # the shared colour bar


@pytest.mark.parametrize("wavelengths,label,first,last", [((400.0, 1000.0), "wavelength (nm)", 400.0, 1000.0),
                                                         (None, "point index", 0.0, 19.0)])
def test_spectra_are_drawn_against_wavelength_when_known(captured, wavelengths, label, first, last):
    spectra = np.random.default_rng(2).random((6, 20))
    fig = figures.spectra_on_grid(images(1)[0], spectra, (3, 2), "s1", "unused.png", wavelengths=wavelengths)
    panels = [ax for ax in fig.axes if ax.lines and len(ax.lines[0].get_xdata()) == 20]
    assert len(panels) == 6
    x = panels[0].lines[0].get_xdata()
    assert x[0] == pytest.approx(first) and x[-1] == pytest.approx(last)
    assert {ax.get_xlabel() for ax in panels} == {label, ""}  # bottom row labelled
    assert {ax.get_ylabel() for ax in panels} == {"intensity (as measured)", ""}  # first column labelled


def test_result_figures_label_both_axes_with_units(captured):
    y_true, y_pred = np.array([0.007, 0.02, 0.039]), np.array([0.008, 0.018, 0.035])
    metrics = {"r2": 0.9, "rmse": 0.00254}
    for fig in (figures.predicted_vs_true(y_true, y_pred, metrics, "x.png"),
                figures.residuals_vs_true(y_true, y_pred, "x.png"),
                figures.residual_histogram(y_true, y_pred, "x.png")):
        ax = fig.axes[0]
        assert ax.get_xlabel() and ax.get_ylabel()
        assert "label units" in ax.get_xlabel()
    assert "RMSE 0.00254" in figures.predicted_vs_true(y_true, y_pred, metrics, "x.png").axes[0].get_title()


def test_wavelength_range_param():
    from metallo.errors import MetalloError
    from metallo.layout import wavelength_range

    assert wavelength_range({"data": {"wavelengths": [400, 1000]}}) == (400.0, 1000.0)
    assert wavelength_range({"data": {"wavelengths": []}}) is None and wavelength_range({"data": {}}) is None
    for bad in ([1000, 400], [400], "400-1000"):
        with pytest.raises(MetalloError, match="data.wavelengths"):
            wavelength_range({"data": {"wavelengths": bad}})


# ------------------------------------------------------------------------------------------------
# the image processor (goal 4)
# ------------------------------------------------------------------------------------------------

def processor():
    from metallo.processing import MetalloProcessor

    return MetalloProcessor([0.5] * 3, [0.25] * 3, [0.0] * 20, [1.0] * 20, image_size=16, resize=24, crop=20,
                            fit="full", spectra_norm="snv")


def test_processor_is_a_transformers_image_processor(tmp_path):
    from transformers import AutoImageProcessor, BatchFeature
    from transformers.image_processing_utils import BaseImageProcessor

    from metallo.models import create_model

    create_model("toynet", n_spectra=6, spectrum_length=20, grid=[3, 2], image_size=32, label_mean=0.0,
                 label_std=1.0).config.save_pretrained(tmp_path)
    original = processor()
    assert isinstance(original, BaseImageProcessor)
    original.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "MetalloProcessor"
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "MetalloProcessor" and loaded == original

    batch = loaded([np.zeros((30, 40, 3), np.uint8), np.full((20, 20, 3), 255, np.uint8)],
                   spectra=np.random.default_rng(0).random((2, 6, 20)))
    assert isinstance(batch, BatchFeature)
    assert tuple(batch["pixel_values"].shape) == (2, 3, 16, 16) and tuple(batch["spectra"].shape) == (2, 6, 20)
    assert float(batch["pixel_values"][0].mean()) == pytest.approx(-2.0)  # (0 - 0.5) / 0.25


def test_processor_json_from_before_it_was_an_image_processor_still_loads(tmp_path):
    from transformers import AutoImageProcessor

    from metallo.inference import load_processor
    from metallo.models import create_model
    from metallo.processing import MetalloProcessor

    create_model("toynet", n_spectra=6, spectrum_length=20, grid=[3, 2], image_size=32, label_mean=0.0,
                 label_std=1.0).config.save_pretrained(tmp_path)
    old = {k: v for k, v in processor().to_dict().items() if k != "image_processor_type"}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(old))
    assert MetalloProcessor.from_pretrained(tmp_path) == processor()
    assert load_processor(tmp_path) == processor()
    assert AutoImageProcessor.from_pretrained(tmp_path) == processor()  # via config.json's model_type


def test_import_metallo_alone_registers_the_auto_classes_when_transformers_comes(tmp_path):
    from metallo.models import create_model

    create_model("toynet", n_spectra=6, spectrum_length=20, grid=[3, 2], image_size=32, label_mean=0.0,
                 label_std=1.0).save_pretrained(tmp_path)
    processor().save_pretrained(tmp_path)
    code = ("import sys; import metallo; assert 'transformers' not in sys.modules\n"
            "from transformers import AutoImageProcessor, AutoModel\n"
            f"print(type(AutoImageProcessor.from_pretrained({str(tmp_path)!r})).__name__, "
            f"type(AutoModel.from_pretrained({str(tmp_path)!r})).__name__)")
    result = subprocess.run([sys.executable, "-c", code], env=project_env(PYTHONPATH=str(REPO)), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["MetalloProcessor", "ToyNetModel"]
    assert "Warning" not in result.stderr


# ------------------------------------------------------------------------------------------------
# dvclive series and the progress output (goals 1 and 6)
# ------------------------------------------------------------------------------------------------

def test_series_names_are_the_ones_users_see():
    from metallo.training.live import series

    assert series({"loss": 0.5, "grad_norm": 1.0, "learning_rate": 1e-3, "epoch": 0.5}) == \
        {"train_loss": 0.5, "learning_rate": 1e-3, "epoch": 0.5}
    assert series({"eval_rmse": 0.4, "eval_r2": 0.8, "eval_runtime": 0.1, "epoch": 1.0}) == \
        {"val_rmse": 0.4, "val_r2": 0.8}
    assert series({"train_runtime": 9.0, "train_loss": 0.1, "epoch": 2.0}) == {}  # runtimes go to MLflow only


def test_live_callback_replays_a_resumed_history_once(tmp_path, monkeypatch):
    from metallo.training.live import LiveCallback, finish, open_live

    monkeypatch.chdir(tmp_path)
    live = open_live(tmp_path / "metrics")
    callback = LiveCallback(live)
    state = SimpleNamespace(is_world_process_zero=True, global_step=2,
                            log_history=[{"loss": 1.0, "epoch": 0.5, "step": 1}, {"loss": 0.8, "epoch": 1.0, "step": 2},
                                         {"eval_rmse": 0.5, "epoch": 1.0, "step": 2}])
    callback.on_train_begin(None, state, None)
    state.global_step = 3
    callback.on_log(None, state, None, logs={"loss": 0.6, "epoch": 1.5})
    finish(live)
    folder = tmp_path / "metrics" / "live"
    assert (folder / "plots/metrics/train_loss.tsv").read_text().split() == \
        ["step", "train_loss", "1", "1.0", "2", "0.8", "3", "0.6"]
    assert (folder / "plots/metrics/val_rmse.tsv").read_text().split() == ["step", "val_rmse", "2", "0.5"]
    summary = json.loads((folder / "metrics.json").read_text())
    assert summary == {"train_loss": 0.6, "epoch": 1.5, "step": 3}  # the best model's metrics are in train.json


def test_progress_prints_one_line_per_evaluation_with_epoch_step_and_eta(capsys):
    from metallo.training.progress import TrainingProgress

    progress = TrainingProgress(bar=False)
    args = SimpleNamespace(num_train_epochs=3, metric_for_best_model="rmse")
    state = SimpleNamespace(is_world_process_zero=True, global_step=0, max_steps=30, epoch=0.0,
                            num_train_epochs=3, best_metric=None)
    progress.on_train_begin(args, state, None)
    for step in range(1, 11):
        state.global_step, state.epoch = step, step / 10
        progress.on_step_end(args, state, None)
        progress.on_log(args, state, None, logs={"loss": 0.5, "learning_rate": 1e-3, "epoch": state.epoch})
    progress.on_log(args, state, None, logs={"eval_rmse": 0.25, "eval_r2": 0.9, "epoch": 1.0})
    progress.on_train_end(args, state, None)
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line]
    assert len(lines) == 1
    assert lines[0].startswith("train: epoch 1/3  step 10/30  val RMSE 0.25  R² 0.900") and "ETA" in lines[0]
    assert "{" not in out.out + out.err  # no raw log dicts
