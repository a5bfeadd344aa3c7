"""Reproducibility: the same seed gives the same training; the demo data stages reproduce dvc.lock.

Real git, real DVC CLI, real MLflow SQLite stores, real subprocesses; nothing is mocked. The slow tests
work on copies of the shared tiny project (``shared``, tests/pipeline/conftest.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers.pipeline import (
    DATA_STAGES,
    clone,
    lock_outs,
    remove,
    stage,
)
from tests.helpers.project import REPO, make_project, run


@pytest.mark.slow
def test_same_seed_on_cpu_gives_the_same_training(shared, tmp_path):
    root = clone(shared, tmp_path / "project")

    def outcome(project: Path) -> dict:
        return {
            "train.json": json.loads((project / "metrics/train.json").read_text()),
            "log": (project / "metrics/live/plots/metrics/train/loss.tsv").read_text(),
            "weights": hashlib.sha256((project / "models/model/model.safetensors").read_bytes()).hexdigest(),
        }

    def train_on_cpu() -> dict:
        remove(root, "models/model", "metrics/train.json", "metrics/live")
        result = stage(root, "train", CUDA_VISIBLE_DEVICES="")
        assert result.returncode == 0, result.stderr[-5000:]
        return outcome(root)

    # Without a GPU, the shared project's `dvc repro` trained on the CPU with the same seed: that is the first run.
    first = train_on_cpu() if torch.cuda.is_available() else outcome(shared)
    again = train_on_cpu()
    volatile = ("train_runtime_s", "train_samples_per_second")
    assert {k: v for k, v in again["train.json"].items() if k not in volatile} == {
        k: v for k, v in first["train.json"].items() if k not in volatile
    }
    assert again["log"] == first["log"]
    assert again["weights"] == first["weights"]


@pytest.mark.slow
def test_demo_data_stages_reproduce_the_committed_dvc_lock(tmp_path):
    committed = yaml.safe_load((REPO / "dvc.lock").read_text()) if (REPO / "dvc.lock").is_file() else {}
    missing = [s for s in DATA_STAGES if s not in committed.get("stages", {})]
    if missing:
        pytest.skip(
            f"the repository's dvc.lock has no entry for stage(s) {', '.join(missing)}: nothing to compare with"
        )
    root = make_project(tmp_path / "demo", tiny=False, extra_files=("dvc.lock",))

    result = run(["dvc", "repro", "split"], root)
    for name in DATA_STAGES:
        assert f"Running stage '{name}'" in result.stdout
    fresh = yaml.safe_load((root / "dvc.lock").read_text())
    for name in DATA_STAGES:
        assert lock_outs(fresh, name) == lock_outs(committed, name), f"stage {name} did not reproduce dvc.lock"
