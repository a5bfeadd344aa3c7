"""Multi-process data-parallel training through torchrun + the Trainer's DDP (gloo on CPU)."""
from __future__ import annotations

import json

import mlflow
import pytest

from tests.helpers.project import make_project, run

pytestmark = pytest.mark.slow


def test_train_stage_under_torchrun_saves_and_logs_once(tmp_path):
    root = make_project(tmp_path / "project", {"train": {"nproc_per_node": 2, "ddp_backend": "gloo"}})
    run(["dvc", "repro", "split"], root)
    result = run(["python", "-m", "stages.train"], root)
    assert "torch.distributed.run" in result.stdout and "--nproc_per_node=2" in result.stdout

    summary = json.loads((root / "metrics/train.json").read_text())
    # Two processes shard each epoch: every process sees half of the training rows per step.
    assert summary["train_samples"] == 19 and summary["steps"] > 0
    assert sorted(p.name for p in (root / "models").iterdir()) == ["model", "run.json"]
    assert (root / "models/model/model.safetensors").is_file()

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("metallo").experiment_id])
    assert len(runs) == 1
    assert runs[0].data.params["train.nproc_per_node"] == "2"
    assert json.loads((root / "models/run.json").read_text())["run_id"] == runs[0].info.run_id
