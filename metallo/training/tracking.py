"""MLflow tracking: one run per pipeline execution, robust to an unreachable store.

The store is ``MLFLOW_TRACKING_URI`` when set, otherwise ``sqlite:///<project>/mlflow.db``
with artifacts in ``<project>/mlartifacts``. ``<project>`` is the real project root even
when DVC runs an experiment in a temporary copy under ``.dvc/tmp/exps``, so workspace runs
and queued experiments land in the same store. Tracking never decides whether a stage
succeeds: when MLflow fails, a warning is printed and the DVC outputs remain the record.
"""
from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from metallo.params import flatten

DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The project folder; for a DVC temporary experiment copy, the project it was copied from."""
    path = Path(start or os.getcwd()).resolve()
    parts = path.parts
    for i in range(len(parts) - 2):
        if parts[i] == ".dvc" and parts[i + 1] == "tmp" and parts[i + 2] == "exps":
            return Path(*parts[:i])
    return path


def tracking_uri(start: str | os.PathLike | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's absolute SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root(start) / DB_FILE}"


def artifact_root(start: str | os.PathLike | None = None) -> str:
    return (project_root(start) / ARTIFACTS_DIR).as_uri()


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


class Tracker:
    """A thin, failure-tolerant handle on one MLflow run.

    Every call goes through :meth:`_safely`: the first MLflow error prints one warning and
    disables the tracker, so training and evaluation carry on without it.
    """

    def __init__(self, experiment: str, *, enabled: bool = True, run_id: str | None = None):
        self.experiment = experiment
        self.enabled = enabled
        self.run_id = run_id
        self.uri = tracking_uri()

    def _safely(self, what: str, fn: Callable[[], Any]) -> Any:
        if not self.enabled:
            return None
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - any tracking failure must not stop the pipeline
            self.enabled = False
            warnings.warn(f"MLflow tracking disabled: could not {what} at {self.uri} ({type(err).__name__}: {err}). "
                          "Training and evaluation continue; the DVC outputs (models/, metrics/) are the record.",
                          stacklevel=2)
            return None

    def start(self, run_name: str | None = None, tags: Mapping[str, str] | None = None) -> str | None:
        """Create or reopen the run (in the experiment, with a project-local artifact root)."""
        import mlflow

        def _start() -> str:
            mlflow.set_tracking_uri(self.uri)
            if self.run_id is None:
                client = mlflow.MlflowClient(self.uri)
                experiment = client.get_experiment_by_name(self.experiment)
                experiment_id = (experiment.experiment_id if experiment else
                                 client.create_experiment(self.experiment, artifact_location=self._artifact_location()))
                run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {}))
                self.run_id = run.info.run_id
            return self.run_id

        return self._safely("start a run", _start)

    def _artifact_location(self) -> str | None:
        return artifact_root() if self.uri.startswith("sqlite:") else None

    def client(self):
        import mlflow

        return mlflow.MlflowClient(self.uri)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        self._safely("log params", lambda: [self.client().log_batch(self.run_id, params=flat[i:i + 100])
                                            for i in range(0, len(flat), 100)])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v == v]  # drop NaN
        self._safely("log metrics", lambda: self.client().log_batch(self.run_id, metrics=values))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._safely("set tags", lambda: [self.client().set_tag(self.run_id, k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        path = Path(path)
        if not path.exists():
            return
        if path.is_dir():
            self._safely(f"log {path}", lambda: self.client().log_artifacts(self.run_id, str(path), artifact_path))
        else:
            self._safely(f"log {path}", lambda: self.client().log_artifact(self.run_id, str(path), artifact_path))

    def finish(self, status: str = "FINISHED") -> None:
        self._safely("end the run", lambda: self.client().set_terminated(self.run_id, status))

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run any other MLflow call under the same failure policy."""
        return self._safely(what, fn)


class TrackerCallback(TrainerCallback):
    """Sends the Trainer's logs (training curve, validation metrics) to a :class:`Tracker`.

    Used instead of transformers' built-in ``MLflowCallback``, which would open its own run
    and dump every ``TrainingArguments`` field as a param.
    """

    def __init__(self, tracker: Tracker):
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            numbers = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            self.tracker.log_metrics(numbers, step=state.global_step)
