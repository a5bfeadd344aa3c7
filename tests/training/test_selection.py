"""The choice between MetalloNet's closed-form start and the trained model (metallo/training/selection.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metallo.data.dataset import MetalloDataset
from metallo.training import selection
from tests.helpers.models import make_model, tiny_processor


@pytest.fixture()
def val(tmp_path) -> MetalloDataset:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "images.npy", rng.integers(0, 255, (6, 64, 64, 3), dtype=np.uint8))
    np.save(tmp_path / "spectra.npy", rng.random((6, 24, 64), dtype=np.float32))
    return MetalloDataset(
        tmp_path / "images.npy", tmp_path / "spectra.npy", np.arange(6), rng.random(6), list("abcdef")
    )


@pytest.fixture()
def model():
    return make_model("metallonet", classical_branch=True, image_size=64, spectrum_length=64).eval()


def test_no_start_for_a_model_without_a_closed_form_branch(val):
    plain = make_model("metallonet", classical_branch=False, image_size=64, spectrum_length=64)
    assert selection.record_start(plain, tiny_processor(raw_copies=True), val) is None
    metrics, record = selection.keep_better(plain, None, {"rmse": 1.0}, "rmse", greater_is_better=False)
    assert metrics == {"rmse": 1.0} and record == {}


@pytest.mark.parametrize("trained_rmse, kept", [(10.0, selection.KEPT_START), (1e-6, selection.KEPT_TRAINED)])
def test_the_better_validated_model_is_kept(model, val, trained_rmse, kept):
    start = selection.record_start(model, tiny_processor(raw_copies=True), val)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with torch.no_grad():  # "training": every weight moves
        for parameter in model.parameters():
            parameter.add_(1.0)
    metrics, record = selection.keep_better(model, start, {"rmse": trained_rmse}, "rmse", greater_is_better=False)
    assert record == {"kept": kept, "start_rmse": start.metrics["rmse"], "trained_rmse": trained_rmse}
    restored = all(torch.equal(model.state_dict()[name], tensor) for name, tensor in before.items())
    assert restored == (kept == selection.KEPT_START)
    assert metrics == (start.metrics if kept == selection.KEPT_START else {"rmse": trained_rmse})


def test_the_start_survives_a_resume(model, val, tmp_path):
    start = selection.record_start(model, tiny_processor(raw_copies=True), val)
    selection.save_start(start, tmp_path / "checkpoints")
    loaded = selection.load_start(tmp_path / "checkpoints")
    assert loaded.metrics == pytest.approx(start.metrics)
    assert all(torch.equal(loaded.state[name], tensor) for name, tensor in start.state.items())
    assert selection.load_start(tmp_path / "elsewhere") is None
