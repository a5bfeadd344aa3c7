"""kill -9 of `dvc repro` during each stage, then `dvc repro` again: the outputs of an uninterrupted run.

Real subprocesses killed with SIGKILL on a copy of the session's tiny project (``shared_project``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.helpers.pipeline import lock_outs
from tests.helpers.processes import wait_for
from tests.helpers.project import make_project, project_env, run

# ----------------------------------------------------------------------------------------------
# 4. kill -9 of `dvc repro` during each stage, then `dvc repro` again
# ----------------------------------------------------------------------------------------------

#: stage -> what must exist (besides the stage's process) before the kill; None = kill 0.5 s after it starts
KILL_POINTS = {
    "synthesize": "data/synthetic/images",
    "ingest": None,
    "convert": "data/processed",
    "split": None,
    "train": "checkpoints",
}
PIPELINE = ("synthesize", "ingest", "convert", "split", "train")


def _stage_processes(session: int, stage: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == session and f"stages.{stage}" in " ".join(proc.cmdline()):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _outputs(root: Path) -> dict[str, object]:
    """What the stages up to train produced: dvc.lock hashes, and train.json without its timings."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    outs = {
        f"{s}:{path}": md5
        for s in PIPELINE
        for path, md5 in lock_outs(lock, s).items()
        if path not in ("metrics/train.json", "models/run.json")
    }  # timings; the MLflow run id
    outs["run.json keys"] = sorted(json.loads((root / "models/run.json").read_text()))
    train = json.loads((root / "metrics/train.json").read_text())
    outs["train.json"] = {k: v for k, v in train.items() if k not in ("train_runtime_s", "train_samples_per_second")}
    return outs


@pytest.mark.slow
def test_kill_during_each_stage_then_repro_gives_the_uninterrupted_outputs(shared_project, tmp_path):
    root = make_project(tmp_path / "project")
    injected = []
    for stage in PIPELINE:
        log = open(tmp_path / f"repro-{stage}.log", "w")
        repro = subprocess.Popen(
            ["dvc", "repro", "train"],
            cwd=root,
            env=project_env(),  # as shared_project ran
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            procs = wait_for(
                lambda: _stage_processes(repro.pid, stage) or (repro.poll() is not None and ["ended"]),  # noqa: B023
                300,
                f"stage {stage} to start",
            )
            assert procs != ["ended"], (
                f"dvc repro ended before {stage} ran:\n{(tmp_path / f'repro-{stage}.log').read_text()}"
            )
            point = KILL_POINTS[stage]
            if point:
                wait_for(lambda: (root / point).exists() or repro.poll() is not None, 300, f"{point} to appear")  # noqa: B023
            else:  # ingest and split of the tiny project can end within half a second on a quiet machine
                time.sleep(0.1)
            alive = bool(_stage_processes(repro.pid, stage))
            os.killpg(repro.pid, signal.SIGKILL)
            repro.wait(timeout=30)
            injected.append((stage, alive))
        finally:
            if repro.poll() is None:
                os.killpg(repro.pid, signal.SIGKILL)
                repro.wait()
            log.close()
        wait_for(lambda: not _stage_processes(repro.pid, stage), 10, f"the killed {stage} processes to go")  # noqa: B023
    print("kills (stage, its process still running when killed):", injected)
    assert sum(alive for _, alive in injected) >= 4, injected  # (ingest/split may finish within 0.5 s)

    status = run(["dvc", "status", "train"], root)
    assert "up to date" not in status.stdout.lower(), status.stdout  # the kill left train undone
    run(["dvc", "repro", "train"], root)
    assert _outputs(root) == _outputs(shared_project)
    assert "up to date" in run(["dvc", "status", "train"], root).stdout.lower()
