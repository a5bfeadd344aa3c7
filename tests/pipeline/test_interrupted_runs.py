"""Interrupted runs: atomic outputs, half-written checkpoints, a killed training that resumes.

Real git, real DVC CLI, real MLflow SQLite stores, real subprocesses; nothing is mocked. The slow tests
work on copies of the shared tiny project (``shared``, tests/pipeline/conftest.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from metallo.io import atomic_path
from tests.helpers.pipeline import (
    clone,
    complete_checkpoints,
    edit_params,
    remove,
    stage,
)
from tests.helpers.project import project_env


def _tmp_siblings(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.tmp-*"))


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_file_write_interrupted_leaves_destination_untouched(tmp_path, error):
    dest = tmp_path / "out.json"
    dest.write_text("old")
    with pytest.raises(error):
        with atomic_path(dest) as tmp:
            tmp.write_text("new, half written")
            raise error()
    assert dest.read_text() == "old"
    assert _tmp_siblings(dest) == []

    fresh = tmp_path / "never.json"
    with pytest.raises(error):
        with atomic_path(fresh) as tmp:
            tmp.write_text("partial")
            raise error()
    assert not fresh.exists() and _tmp_siblings(fresh) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_folder_write_interrupted_leaves_destination_untouched(tmp_path, error):
    dest = tmp_path / "models" / "model"
    dest.mkdir(parents=True)
    (dest / "config.json").write_text("old")
    with pytest.raises(error):
        with atomic_path(dest) as tmp:
            tmp.mkdir()
            (tmp / "config.json").write_text("new")
            (tmp / "model.safetensors").write_bytes(b"half")
            raise error()
    assert sorted(p.name for p in dest.iterdir()) == ["config.json"]
    assert (dest / "config.json").read_text() == "old"
    assert _tmp_siblings(dest) == []

    with atomic_path(dest) as tmp:  # and a completed write replaces the whole folder
        tmp.mkdir()
        (tmp / "model.safetensors").write_bytes(b"new")
    assert sorted(p.name for p in dest.iterdir()) == ["model.safetensors"]
    assert _tmp_siblings(dest) == []


def test_resume_passes_over_checkpoints_a_kill_left_half_written(tmp_path):
    from metallo.training.checkpoints import FINGERPRINT_FILE, last_complete_checkpoint

    folder = tmp_path / "checkpoints"
    assert last_complete_checkpoint(folder) is None  # no folder yet
    folder.mkdir()
    assert last_complete_checkpoint(folder) is None
    for step, state in ((3, '{"global_step": 3}'), (6, None), (9, '{"global_st'), (12, None)):
        (folder / f"checkpoint-{step}").mkdir()
        (folder / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"weights")
        if state is not None:
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
        (folder / f"checkpoint-{step}" / FINGERPRINT_FILE).write_text('{"digest": "d"}')
    (folder / "checkpoint-99.tmp").mkdir()
    assert last_complete_checkpoint(folder) == str(folder / "checkpoint-3")
    (folder / "checkpoint-12" / "trainer_state.json").write_text('{"global_step": 12}')
    assert last_complete_checkpoint(folder) == str(folder / "checkpoint-12")


@pytest.mark.slow
def test_killed_training_leaves_no_model_and_resumes_from_its_last_checkpoint(shared, tmp_path):
    root = clone(shared, tmp_path / "project")
    remove(root, "checkpoints", "models/model", "metrics/train.json", "metrics/live")
    edit_params(root, lambda p: p["train"].update(num_train_epochs=4, save_strategy="epoch", save_total_limit=2))

    log_path = tmp_path / "killed.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stages.train"], cwd=root, env=project_env(), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 600
            while not complete_checkpoints(root / "checkpoints"):
                assert proc.poll() is None, (
                    f"training ended before its first checkpoint:\n{log_path.read_text()[-3000:]}"
                )
                assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    # No half-written output that DVC or evaluate could take as the model.
    assert not (root / "models/model").exists()
    assert not (root / "metrics/train.json").exists()
    checkpoints = complete_checkpoints(root / "checkpoints")
    last = max(checkpoints)
    steps_per_epoch = int(round(checkpoints[min(checkpoints)]["global_step"] / checkpoints[min(checkpoints)]["epoch"]))
    total = 4 * steps_per_epoch
    assert last < total

    # A kill during the next save leaves a newer checkpoint folder without trainer_state.json: pass it over.
    partial = root / "checkpoints" / f"checkpoint-{last + steps_per_epoch}"
    if not partial.exists():
        partial.mkdir()
        weights = (root / "checkpoints" / f"checkpoint-{last}" / "model.safetensors").read_bytes()
        (partial / "model.safetensors").write_bytes(weights[: len(weights) // 2])

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("metallo").experiment_id
    killed_run = [r for r in client.search_runs([experiment_id]) if r.info.status == "RUNNING"]
    assert len(killed_run) == 1 and killed_run[0].data.tags["mlflow.metallo.pid"] == str(proc.pid)

    edit_params(root, lambda p: p["train"].update(resume=True))
    resumed = stage(root, "train")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-5000:]
    assert f"train: resuming from {os.path.join('checkpoints', f'checkpoint-{last}')}" in resumed.stdout
    # The next train marked the killed run's MLflow run KILLED (its process is gone).
    assert client.get_run(killed_run[0].info.run_id).info.status == "KILLED"
    assert f"marked run {killed_run[0].info.run_id} KILLED" in resumed.stdout

    summary = json.loads((root / "metrics/train.json").read_text())
    assert summary["steps"] == total and summary["epochs"] == pytest.approx(4.0)
    final = complete_checkpoints(root / "checkpoints")
    assert max(final) == total and final[total]["global_step"] == total
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (root / "models/model" / name).is_file()
    assert list((root / "models").glob(".model.tmp-*")) == []
    # The training curve holds every step once: the steps run after the checkpoint by the killed run are redone.
    log = pd.read_csv(root / "metrics/live/plots/metrics/train/loss.tsv", sep="\t")  # dvclive
    assert sorted(log["step"]) == list(range(1, total + 1))
