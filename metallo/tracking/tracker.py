"""MLflow tracking: one run per pipeline execution, robust to an unreachable store.

The store is ``MLFLOW_TRACKING_URI`` when set, otherwise ``sqlite:///<project>/mlflow.db``
with artifacts in ``<project>/mlartifacts``. ``<project>`` is the real project root even
when DVC runs an experiment in a temporary copy under ``.dvc/tmp/exps``, so workspace runs
and queued experiments land in the same store. Tracking never decides whether a stage
succeeds: when MLflow fails, a warning is printed and the DVC outputs remain the record.

An HTTP(S) tracking server is checked with one TCP connection (:data:`CONNECT_TIMEOUT_S`)
before any MLflow call, and MLflow's own HTTP retries and timeout are bounded
(:data:`HTTP_DEFAULTS`, only where the user has not set those variables), so an unreachable
server costs seconds and one warning instead of minutes of retries. Every MLflow call also runs under a
wall-clock deadline (:func:`call_deadline`, ``METALLO_TRACKING_TIMEOUT`` seconds): a server that accepts and
then answers a byte at a time (MLflow's read timeout restarts with every byte) costs that long and one
warning, then tracking is off. URIs in messages are shown without their credentials (:func:`metallo.uris.masked`).

Each training run is tagged with the process that owns it; when ``train`` starts a run it marks KILLED
the runs a killed training left RUNNING (:mod:`metallo.tracking.stale_runs`).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from metallo.errors import MetalloError
from metallo.metric_names import trainer_metrics
from metallo.params import Section, bounded_str, flatten
from metallo.tracking.stale_runs import end_stale_runs, owner_tags
from metallo.uris import masked


@dataclass(frozen=True)
class TrackingParams(Section):
    """The ``tracking:`` section: the MLflow experiment, and the registered model's name ('' or absent: none)."""

    NAME = "tracking"
    experiment: str
    register: str | None = None

    def check(self) -> None:
        self._set("register", (self.register or "").strip())


#: Keys of the ``tracking:`` params section.
TRACKING_KEYS = TrackingParams.keys()
DB_FILE = "mlflow.db"
#: The experiment's kind for the MLflow UI: model training (its runs table and charts), not the GenAI overview
#: (traces, token usage) that MLflow 3 opens on an experiment without this tag.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
#: The tag the MLflow UI shows as an experiment's, a run's or a model version's description.
NOTE_TAG = "mlflow.note.content"
EXPERIMENT_NOTE = (
    "Metallo: one run per DVC pipeline execution (`dvc repro` / `dvc exp run`), named after the DVC experiment. "
    "Metrics: `test/*` the model on the test split, `baseline/*` the classical and mean baselines on the same "
    "split, `val/*` the kept model on the validation split, `val_curve/*` the validation split after each "
    "evaluation, `train/*` the training curve. Each run's description lists its changed params and its test "
    "RMSE beside the baselines; the models are registered as `metallo` (alias `best`)."
)
ARTIFACTS_DIR = "mlartifacts"
#: MLflow HTTP settings Metallo applies when the environment does not set them (MLflow's defaults
#: retry for minutes against a server that is down).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
#: Seconds to wait for a TCP connection to an HTTP(S) tracking server before giving up on it.
CONNECT_TIMEOUT_S = 3.0
#: The environment variable that bounds each tracking call (seconds), and its default. An upload of a large
#: model folder to a remote store is the longest call Metallo makes.
DEADLINE_ENV = "METALLO_TRACKING_TIMEOUT"
DEFAULT_DEADLINE_S = 300.0


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


def bound_http_retries(environ: dict | None = None) -> None:
    """Set :data:`HTTP_DEFAULTS` in ``environ`` (``os.environ``) where the user has not set them."""
    environ = os.environ if environ is None else environ
    for key, value in HTTP_DEFAULTS.items():
        environ.setdefault(key, value)


def unreachable(uri: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why an ``http(s)://`` tracking server cannot be reached (one TCP connect), or ``None``."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout):
            return None
    except (OSError, ValueError) as err:
        return f"{type(err).__name__}: {err}"


def call_deadline() -> float:
    """Seconds one tracking call may take: ``METALLO_TRACKING_TIMEOUT``, else :data:`DEFAULT_DEADLINE_S`."""
    raw = os.environ.get(DEADLINE_ENV, "").strip()
    if not raw:
        return DEFAULT_DEADLINE_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise MetalloError(f"{DEADLINE_ENV} must be a positive number of seconds (e.g. 300); got {raw!r}.")
    return seconds


class DeadlineExceeded(Exception):
    """A tracking call that has not returned within its deadline (it is left running in its daemon thread)."""


def within_deadline(fn: Callable[[], Any], seconds: float) -> Any:
    """``fn()`` in a daemon thread, waited for at most ``seconds``; raises :class:`DeadlineExceeded` after that.

    A call stuck on a socket cannot be cancelled from outside: its thread is abandoned (a daemon thread does
    not keep the process alive), and the caller stops using the tracker.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = err

    thread = threading.Thread(target=target, name="metallo-tracking-call", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise DeadlineExceeded(
            f"the server did not answer within {seconds:g} s; {DEADLINE_ENV} sets this bound per call"
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def lost_insert_race(err: Exception) -> bool:
    """Whether an MLflow error is the store refusing a row that another process inserted first: two queued
    experiments on one server creating the same experiment, dataset or registered model at the same moment
    (MLflow checks, then inserts; the unique constraint decides)."""
    text = str(err)
    return (
        getattr(err, "error_code", "") == "RESOURCE_ALREADY_EXISTS"
        or "UniqueViolation" in text  # PostgreSQL
        or "UNIQUE constraint failed" in text  # SQLite
    )


def create_or_find(create: Callable[[], Any], find: Callable[[], Any]) -> Any:
    """``create()``; when another process inserted the same row first (:func:`lost_insert_race`), ``find()``.
    The failed insert wrote nothing, so ``find`` sees the winner's row."""
    from mlflow.exceptions import MlflowException

    try:
        return create()
    except MlflowException as err:
        if not lost_insert_race(err):
            raise
        return find()


def experiment_tags() -> dict[str, str]:
    """The experiment's kind (model training) and description, set when Metallo creates or first uses it."""
    return {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, NOTE_TAG: EXPERIMENT_NOTE}


class Tracker:
    """A thin, failure-tolerant handle on one MLflow run.

    Every call goes through :meth:`_safely`: the first MLflow error prints one warning and
    disables the tracker, so training and evaluation carry on without it. Metrics logged with
    ``synchronous=False`` go through MLflow's asynchronous logging queue (a training step never
    waits for the store); :meth:`flush` waits for them, and :meth:`finish` flushes before ending the run.
    """

    def __init__(self, experiment: str, *, enabled: bool = True, run_id: str | None = None):
        self.experiment = experiment
        self.enabled = enabled
        self.run_id = run_id
        self.uri = tracking_uri()
        self.experiment_id: str | None = None  # known once :meth:`start` has created or found the experiment
        self._pending: list = []  # MLflow RunOperations of asynchronous log calls not yet waited for
        if self.enabled and self.uri.startswith(("http://", "https://")):
            bound_http_retries()
            problem = unreachable(self.uri)
            if problem:
                self._disable(
                    f"the tracking server {self.uri} cannot be reached ({problem})",
                    "Start the server or unset MLFLOW_TRACKING_URI to use the project's mlflow.db.",
                )
        self.deadline = call_deadline()

    def _disable(self, why: str, advice: str = "") -> None:
        """Turn tracking off with the one warning it gets (credentials in any URI masked)."""
        self.enabled = False
        warnings.warn(
            masked(
                f"MLflow tracking disabled: {why}. Training and evaluation continue; the DVC outputs "
                f"(models/, metrics/) are the record.{' ' + advice if advice else ''}"
            ),
            stacklevel=3,
        )

    def _safely(self, what: str, fn: Callable[[], Any]) -> Any:
        if not self.enabled:
            return None
        try:
            return within_deadline(fn, self.deadline)
        except Exception as err:  # noqa: BLE001 - any tracking failure must not stop the pipeline
            reason = str(err) if isinstance(err, DeadlineExceeded) else f"{type(err).__name__}: {err}"
            self._disable(f"could not {what} at {self.uri} ({reason})")
            return None

    def start(self, run_name: str | None = None, tags: Mapping[str, str] | None = None) -> str | None:
        """Create or reopen the run (in the experiment, with a project-local artifact root)."""
        import mlflow

        def _start() -> str:
            mlflow.set_tracking_uri(self.uri)
            if self.run_id is None:
                client = mlflow.MlflowClient(self.uri)
                experiment_id = self._experiment_id(client)
                if not self.enabled:  # the deadline passed meanwhile: this thread was abandoned, make no run
                    raise DeadlineExceeded("abandoned")
                self.experiment_id = experiment_id
                end_stale_runs(client, self.experiment_id)
                owned = {**dict(tags or {}), **owner_tags()}
                run = client.create_run(self.experiment_id, run_name=run_name, tags=owned)
                self.run_id = run.info.run_id
            return self.run_id

        return self._safely("start a run", _start)

    def sweep_stale_runs(self) -> None:
        """Mark KILLED this experiment's RUNNING runs whose process is gone (also when DVC restored train from its
        run cache, so no training started to do it)."""

        def _sweep() -> None:
            experiment = self.client().get_experiment_by_name(self.experiment)
            if experiment is not None:
                end_stale_runs(self.client(), experiment.experiment_id)

        self._safely("check for runs left RUNNING", _sweep)

    @property
    def run_url(self) -> str | None:
        """The run's page in the tracking server's UI (``None`` for a local store or no run)."""
        on_server = self.uri.startswith(("http://", "https://"))
        if not (self.enabled and self.run_id and self.experiment_id and on_server):
            return None
        return masked(f"{self.uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}")

    def _experiment_id(self, client) -> str:
        """The experiment's id, creating the experiment if it is new (two queued experiments starting at once
        on a fresh server may both find none; the one that loses the create finds the winner's)."""
        experiment = client.get_experiment_by_name(self.experiment)
        if experiment is not None:
            for key, value in experiment_tags().items():  # an experiment made before these tags: add them once
                if key not in experiment.tags:
                    client.set_experiment_tag(experiment.experiment_id, key, value)
            return experiment.experiment_id
        return create_or_find(
            lambda: client.create_experiment(
                self.experiment, artifact_location=self._artifact_location(), tags=experiment_tags()
            ),
            lambda: client.get_experiment_by_name(self.experiment).experiment_id,
        )

    def _artifact_location(self) -> str | None:
        return artifact_root() if self.uri.startswith("sqlite:") else None

    def client(self):
        import mlflow

        return mlflow.MlflowClient(self.uri)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = [Param(k, bounded_str(v)) for k, v in flatten(params).items()]
        self._safely(
            "log params",
            lambda: [self.client().log_batch(self.run_id, params=flat[i : i + 100]) for i in range(0, len(flat), 100)],
        )

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, synchronous: bool = True) -> None:
        """Log ``metrics`` at ``step``; with ``synchronous=False`` through MLflow's async queue (see :meth:`flush`)."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v == v]  # drop NaN
        operations = self._safely(
            "log metrics", lambda: self.client().log_batch(self.run_id, metrics=values, synchronous=synchronous)
        )
        if operations is not None:
            self._pending.append(operations)

    def flush(self) -> None:
        """Wait until every asynchronously logged metric is in the store."""
        pending, self._pending = self._pending, []
        self._safely("log metrics", lambda: [operations.wait() for operations in pending])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        values = [RunTag(k, str(v)) for k, v in tags.items()]
        self._safely("set tags", lambda: self.client().log_batch(self.run_id, tags=values))

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        path = Path(path)
        if not path.exists():
            return
        if path.is_dir():
            self._safely(f"log {path}", lambda: self.client().log_artifacts(self.run_id, str(path), artifact_path))
        else:
            self._safely(f"log {path}", lambda: self.client().log_artifact(self.run_id, str(path), artifact_path))

    def finish(self, status: str = "FINISHED") -> None:
        self.flush()
        self._safely("end the run", lambda: self.client().set_terminated(self.run_id, status))

    @contextlib.contextmanager
    def failed_on_error(self) -> Iterator[None]:
        """End the run as FAILED when the block raises (a Ctrl-C too), then let the error go on."""
        try:
            yield
        except BaseException:
            self.finish("FAILED")
            raise

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run any other MLflow call under the same failure policy."""
        return self._safely(what, fn)


class TrackerCallback(TrainerCallback):
    """Sends the Trainer's logs (training curve, validation metrics) to a :class:`Tracker`.

    Used instead of transformers' built-in ``MLflowCallback``, which would open its own run, dump every
    ``TrainingArguments`` field as a param and log the Trainer's own names (``eval_rmse``, ``total_flos``);
    here the names are :mod:`metallo.metric_names`'s (``val_curve/rmse``, ``train/loss``). Logging is
    asynchronous, flushed at each epoch's end and at the end of training.
    """

    def __init__(self, tracker: Tracker):
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            numbers = trainer_metrics(logs)  # one name per quantity: eval_rmse -> val_curve/rmse, loss -> train/loss
            if "loss" not in logs:  # evaluation and end-of-training logs repeat the step's epoch
                numbers.pop("epoch", None)
            self.tracker.log_metrics(numbers, step=state.global_step, synchronous=False)

    def on_epoch_end(self, args, state, control, **kwargs):
        self.tracker.flush()

    def on_train_end(self, args, state, control, **kwargs):
        self.tracker.flush()
