"""Tracking robustness: an unusable or locked MLflow store never breaks a run; queued runs log to the project store.

Real git, real DVC CLI, real MLflow SQLite stores, real subprocesses; nothing is mocked. The slow tests
work on copies of the shared tiny project (``shared``, tests/pipeline/conftest.py).
"""

from __future__ import annotations

import json
import sqlite3

import mlflow
import pytest

from tests.helpers.pipeline import (
    clone,
    remove,
    stages_at_once,
)
from tests.helpers.project import TINY_PARAMS, run


@pytest.mark.slow
def test_unusable_or_locked_tracking_store_does_not_break_train_or_evaluate(shared, tmp_path):
    """Three runs at once, each in its own copy of the project:

    evaluate and train against a store that cannot be created (its folder is a regular file),
    and train while the project's own store is held under an exclusive SQLite lock.
    """
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file where the store's folder should be")
    dead = {"MLFLOW_TRACKING_URI": f"sqlite:///{blocker}/mlflow.db"}

    evaluate_root = clone(shared, tmp_path / "evaluate")
    assert json.loads((evaluate_root / "models/run.json").read_text())["run_id"]  # evaluate logs into this run
    remove(evaluate_root, "metrics/eval.json", "metrics/predictions.csv")
    train_root = clone(shared, tmp_path / "train")
    locked_root = clone(shared, tmp_path / "locked")
    for root in (train_root, locked_root):
        remove(root, "models/model", "models/run.json", "metrics/train.json")

    holder = sqlite3.connect(locked_root / "mlflow.db", isolation_level=None, timeout=1)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        evaluated, trained, locked = stages_at_once(
            (evaluate_root, "evaluate", dead), (train_root, "train", dead), (locked_root, "train", {})
        )
    finally:
        holder.rollback()
        holder.close()

    for result in (evaluated, trained, locked):
        assert result.returncode == 0, f"{result.args}:\n{result.stdout[-2000:]}\n{result.stderr[-5000:]}"
    for result in (evaluated, trained):
        assert "MLflow tracking disabled" in result.stderr, result.stderr[-5000:]
    n_test = TINY_PARAMS["synthesize"]["samples_per_slice"]["2"]
    assert json.loads((evaluate_root / "metrics/eval.json").read_text())["test"]["n"] == n_test
    assert (evaluate_root / "metrics/predictions.csv").is_file()
    for root in (train_root, locked_root):
        assert (root / "models/model/model.safetensors").is_file()
        assert json.loads((root / "metrics/train.json").read_text())["steps"] > 0
        assert (root / "models/run.json").is_file()
    assert json.loads((train_root / "models/run.json").read_text())["run_id"] is None
    assert blocker.is_file()


@pytest.mark.slow
def test_queued_experiments_log_to_the_project_store(shared, tmp_path):
    root = clone(shared, tmp_path / "project")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline results"], root)
    run(["dvc", "exp", "run", "--queue", "-S", "model.hidden_dim=20"], root)
    run(["dvc", "exp", "run", "--run-all"], root)  # starts a queue worker and waits for it
    status = run(["dvc", "queue", "status"], root).stdout
    assert "Queued" not in status and "Running" not in status and "Failed" not in status, status

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("metallo")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["model.hidden_dim"] for r in runs) == ["16", "20"]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert "test/rmse" in r.data.metrics
    queued_run = next(r for r in runs if r.data.params["model.hidden_dim"] == "20")
    assert queued_run.data.tags.get("dvc.experiment")
    assert list((root / ".dvc" / "tmp").rglob("mlflow.db")) == []
