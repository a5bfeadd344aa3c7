"""The learned path trained without the hand-made branch, weighed against the default by validation
(metallo/training/without_branch.py)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel

from metallo.errors import MetalloError
from metallo.training import selection, without_branch
from metallo.training.arguments import MetalloOptions
from tests.helpers.models import make_model
from tests.helpers.pipeline import clone, edit_params, stage


@pytest.fixture()
def model():
    return make_model("metallonet", classical_branch=True, image_size=64, spectrum_length=64)


def start_with(r2: float) -> selection.Start:
    return selection.Start(state={}, metrics={"rmse": 1.0, "r2": r2})


@pytest.mark.parametrize(
    "r2, below, wanted", [(0.3, 0.9, True), (0.95, 0.9, False), (0.3, 0.0, False), (0.99, 1.0, True)]
)
def test_the_candidate_is_trained_when_the_branch_explains_little(model, r2, below, wanted):
    assert without_branch.wanted(model, start_with(r2), below) is wanted


def test_no_candidate_without_a_branch_or_a_start():
    plain = make_model("metallonet", classical_branch=False, image_size=64, spectrum_length=64)
    assert not without_branch.wanted(plain, start_with(0.0), 1.0)
    assert not without_branch.wanted(plain, None, 1.0)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "yes", True])
def test_the_threshold_is_a_share(bad):
    with pytest.raises(MetalloError, match="train.try_without_branch_below .* from 0 .* to 1"):
        MetalloOptions(try_without_branch_below=bad)


def test_the_candidate_is_initialised_as_a_run_without_the_branch(model):
    candidate = without_branch.branch_free_model(model, seed=0)
    assert candidate.config.classical_branch is False and model.config.classical_branch is True
    state = candidate.state_dict()
    assert not any(name.startswith("classical_") for name in state)
    plain = make_model("metallonet", seed=0, classical_branch=False, image_size=64, spectrum_length=64)
    assert state.keys() == plain.state_dict().keys()
    assert all(torch.equal(state[name], tensor) for name, tensor in plain.state_dict().items())


@pytest.mark.parametrize("candidate_rmse, wins", [(0.5, True), (2.0, False)])
def test_the_better_validated_model_is_kept(candidate_rmse, wins):
    record = {"kept": selection.KEPT_TRAINED, "start_rmse": 1.5, "trained_rmse": 1.0}
    won, out = without_branch.keep_better({"rmse": 1.0}, record, {"rmse": candidate_rmse}, "rmse", False)
    assert won is wins
    assert out == {
        **record,
        "kept": without_branch.KEPT_WITHOUT_BRANCH if wins else selection.KEPT_TRAINED,
        "without_branch_rmse": candidate_rmse,
    }
    assert "1.5 at the start, 1 trained" in selection.describe(out, "rmse")


def test_train_stage_weighs_the_three_and_saves_the_kept_one(shared_project, tmp_path):
    """The real train stage on a tiny project with the branch on and the candidate always trained: train.json says
    what was kept among the start, the trained default and the candidate, and the saved model is that one. The
    candidate is the learned path alone: the shared project's own training (``classical_branch: false``, same
    seed) validated exactly as it does."""
    root = clone(shared_project, tmp_path / "project")
    alone = json.loads((shared_project / "metrics" / "train.json").read_text())
    assert "kept" not in alone  # no branch, no closed-form start: its validation RMSE is the trained model's

    def branch_on(params):
        params["model"]["classical_branch"] = True
        params["train"]["try_without_branch_below"] = 1.0
        params["train"]["report_to"] = []

    edit_params(root, branch_on)
    result = stage(root, "train")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training the learned path without it too" in result.stdout
    summary = json.loads((root / "metrics" / "train.json").read_text())
    val = summary["val"]
    candidates = {
        selection.KEPT_START: val["start_rmse"],
        selection.KEPT_TRAINED: val["trained_rmse"],
        without_branch.KEPT_WITHOUT_BRANCH: val["without_branch_rmse"],
    }
    kept = summary["kept"]
    if kept == without_branch.KEPT_WITHOUT_BRANCH:  # the default's choice is made first: start vs trained
        assert val["rmse"] == pytest.approx(candidates[kept]) <= min(val["start_rmse"], val["trained_rmse"])
    else:
        assert val["rmse"] <= val["without_branch_rmse"] and kept in candidates
    assert f"train: kept the {kept}" in result.stdout
    saved = AutoModel.from_pretrained(root / "models" / "model")
    assert saved.config.classical_branch is (kept != without_branch.KEPT_WITHOUT_BRANCH)
    assert (root / "checkpoints" / without_branch.CANDIDATE_DIR).is_dir()
    assert val["without_branch_rmse"] == pytest.approx(alone["val"]["rmse"], rel=1e-6)
