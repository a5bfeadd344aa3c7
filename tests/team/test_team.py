"""The local team stack for real (metallo/team/): PostgreSQL + an MLflow tracking server on 127.0.0.1,
two queued DVC experiments running in parallel against it, and the server killed during a training.

Real PostgreSQL (initdb/pg_ctl, as the ``postgres`` user when the tests run as root), a real
``mlflow server``, the real DVC CLI; nothing is mocked. Every stack is stopped by a fixture finalizer,
also when a test fails, and every wait is bounded.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import psutil
import pytest

from metallo import team
from tests.helpers.pipeline import clone, remove
from tests.helpers.processes import processes_in, wait_until
from tests.helpers.project import REPO, project_env, run
from tests.helpers.queue import start_queue, wait_for_queue

#: Every wait in this file is bounded by one of these (seconds).
QUEUE_TIMEOUT = 600
REPRO_TIMEOUT = 900
EXIT_WAIT = 60
#: Epochs of the training whose server is killed (3 steps each; the kill comes when its params are logged).
KILL_EPOCHS = 4
MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "calibration.json")


def reachable_folder() -> Path:
    """A new folder that the ``postgres`` user can enter when the tests run as root (pytest's tmp_path cannot)."""
    folder = Path(tempfile.mkdtemp(prefix="metallo-team-test-"))
    folder.chmod(0o711)
    return folder


def team_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m metallo.team ...`` as a user runs it (``make team-up`` runs the same)."""
    return subprocess.run(
        [sys.executable, "-m", "metallo.team", *args],
        cwd=REPO,
        env=project_env(**env),
        capture_output=True,
        text=True,
        timeout=team.START_TIMEOUT_S * 2 + 60,
    )


def stop_and_remove(folder: Path) -> None:
    """Finalizer: stop the stack in ``folder`` and delete it; fails if a process of the stack is left."""
    try:
        team.down(folder / "team")
    finally:
        left = wait_until(lambda: not processes_in(folder), EXIT_WAIT)
        shutil.rmtree(folder, ignore_errors=True)
    assert left, f"processes left in {folder}: {processes_in(folder)}"


@pytest.fixture
def stack_folder():
    folder = reachable_folder()
    yield folder
    stop_and_remove(folder)


@pytest.fixture(scope="module")
def stack() -> Iterator[Path]:
    """The folder of one stack for the module, started; ``team.up(folder)`` gives its state (and restarts
    whatever a test killed)."""
    folder = reachable_folder()
    try:
        team.up(folder / "team")
        yield folder / "team"
    finally:
        stop_and_remove(folder)


def copy_project(source: Path, root: Path) -> Path:
    """A copy of a repro'd tiny project without its local MLflow store, everything committed."""
    clone(source, root)
    remove(root, "mlflow.db", "mlartifacts")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline results"], root)
    return root


def sign_in(monkeypatch, folder: Path, account: Path | None = None) -> dict[str, str]:
    """MLflow clients of this test process use the stack's admin account (or the credentials file ``account``);
    returns the variables, for the test's subprocesses."""
    env = team.read_credentials(account) if account else team.client_env(folder)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def kill_tree(entry: dict) -> None:
    """SIGKILL a recorded process and its descendants, as a crash would."""
    process = team.process_of(entry)
    assert process is not None, f"nothing to kill: {entry}"
    tree = [*process.children(recursive=True), process]
    for p in tree:
        p.kill()
    _, left = psutil.wait_procs(tree, timeout=EXIT_WAIT)
    assert not left


def pyfunc_predictions(uri: str, run_id: str, root: Path):
    """Load a run's pyfunc model through the server (artifacts proxied) and predict two processed samples."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        client = mlflow.MlflowClient(uri)
        experiment_id = client.get_run(run_id).info.experiment_id
        (logged,) = client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")
        model = mlflow.pyfunc.load_model(f"models:/{logged.model_id}")  # named metallo-<experiment>, one per run
    finally:
        mlflow.set_tracking_uri(previous)
    images = np.load(root / "data/processed/images.npy", mmap_mode="r")[:2]
    spectra = np.load(root / "data/processed/spectra.npy", mmap_mode="r")[:2]
    return model.predict({"pixel_values": np.array(images), "spectra": np.array(spectra)})


# ------------------------------------------------------------------------------------------------


def test_up_without_postgresql_says_how_to_install_it(tmp_path):
    result = team_cli("up", "--dir", str(tmp_path / "team"), METALLO_PG_BIN=str(tmp_path / "no-postgres"))
    assert result.returncode == 1
    assert "apt-get install postgresql" in result.stderr and "initdb" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "team").exists()


@pytest.mark.parametrize("damage", ['{"postgres": {"pid": 12', "[]"])
def test_a_damaged_state_file_is_a_clear_error_saying_what_to_do(tmp_path, damage):
    folder = tmp_path / "team"
    folder.mkdir()
    (folder / "state.json").write_text(damage)
    for command in ("status", "up", "down"):
        result = team_cli(command, "--dir", str(folder))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"{folder / 'state.json'} is damaged" in result.stderr and "run `up` again" in result.stderr
    assert (folder / "state.json").read_text() == damage, "nothing overwritten"


@pytest.mark.slow
def test_up_status_down_and_up_again_keeps_the_runs(stack_folder, monkeypatch):
    folder = stack_folder / "team"
    started = time.monotonic()
    up = team_cli("up", "--dir", str(folder))
    print(f"team up (first, with initdb): {time.monotonic() - started:.1f} s")
    assert up.returncode == 0, up.stderr
    uri = re.search(r"^export MLFLOW_TRACKING_URI=(http://127\.0\.0\.1:\d+)$", up.stdout, re.MULTILINE).group(1)
    state = json.loads((folder / "state.json").read_text())
    assert uri == state["tracking_uri"] and team.healthy(uri)
    assert {p.pid for p in processes_in(stack_folder)} >= {state["postgres"]["pid"], state["mlflow"]["pid"]}
    for entry in (state["postgres"], state["mlflow"]):
        assert not team.port_free(entry["port"])
        listening = {
            c.laddr.ip
            for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == entry["port"]
        }
        assert listening == {"127.0.0.1"}
    assert "pid" in team_cli("status", "--dir", str(folder)).stdout

    sign_in(monkeypatch, folder)
    client = mlflow.MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("team-check")).info.run_id
    client.log_param(run_id, "answer", "42")
    note = stack_folder / "note.txt"
    note.write_text("kept")
    client.log_artifact(run_id, str(note), "notes")
    client.set_terminated(run_id)
    assert list((folder / "artifacts").rglob("note.txt")), "the server stores artifacts in the stack's folder"

    down = team_cli("down", "--dir", str(folder))
    assert down.returncode == 0, down.stderr
    assert down.stdout.count("stopped") == 2
    assert wait_until(lambda: not processes_in(stack_folder), EXIT_WAIT), processes_in(stack_folder)
    assert all(team.port_free(entry["port"]) for entry in (state["postgres"], state["mlflow"]))

    started = time.monotonic()
    again = team_cli("up", "--dir", str(folder))
    print(f"team up (again): {time.monotonic() - started:.1f} s")
    assert again.returncode == 0, again.stderr
    assert f"export MLFLOW_TRACKING_URI={uri}" in again.stdout, "a restarted stack keeps its ports"
    client = mlflow.MlflowClient(uri)
    kept = client.get_run(run_id)
    assert kept.data.params == {"answer": "42"} and kept.info.status == "FINISHED"
    assert [f.path for f in client.list_artifacts(run_id, "notes")] == ["notes/note.txt"]


@pytest.mark.slow
def test_up_removes_a_stale_postmaster_pid_left_by_a_crash(stack_folder):
    """A crash leaves ``postmaster.pid`` behind: empty (killed while writing it), or naming a PID that now belongs
    to another process of the service user. PostgreSQL refuses to start on either ("lock file ... is empty",
    "already exists"), with the cause only in server.log; ``up`` removes such a file and says so."""
    folder = stack_folder / "team"
    assert team_cli("up", "--dir", str(folder)).returncode == 0
    pid_file = folder / "postgres/data/postmaster.pid"
    service_user = ["runuser", "-u", team.SERVICE_USER, "--"] if os.geteuid() == 0 else []
    other = subprocess.Popen([*service_user, "sleep", "120"], start_new_session=True)
    try:
        for content in ("", f"{other.pid}\n{folder / 'postgres/data'}\n1700000000\n5432\n"):
            assert team_cli("down", "--dir", str(folder)).returncode == 0
            pid_file.write_text(content)
            again = team_cli("up", "--dir", str(folder))
            assert again.returncode == 0, again.stderr
            assert f"removed the stale {pid_file}" in again.stdout, again.stdout
            assert team.healthy(json.loads((folder / "state.json").read_text())["tracking_uri"])
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait(timeout=EXIT_WAIT)


@pytest.mark.slow
def test_two_queued_experiments_run_in_parallel_against_the_server(stack, shared_project, tmp_path, monkeypatch):
    uri = team.up(stack)["tracking_uri"]
    account = sign_in(monkeypatch, stack)
    root = copy_project(shared_project, tmp_path / "project")
    for dim in (20, 24):
        run(
            ["dvc", "exp", "run", "--queue", "-S", f"model.hidden_dim={dim}", "-n", f"team-{dim}"],
            root,
            MLFLOW_TRACKING_URI=uri,
            **account,
        )
    started = time.monotonic()
    start_queue(root, 2, MLFLOW_TRACKING_URI=uri, **account)
    try:
        status = wait_for_queue(root, QUEUE_TIMEOUT)
    finally:
        run(["dvc", "queue", "stop", "--kill"], root, check=False)
    print(f"two queued experiments, -j 2: {time.monotonic() - started:.0f} s")
    assert status and status.count("Success") == 2, status

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("metallo")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`dvc.experiment` LIKE 'team-%'")
    assert sorted(r.data.tags["dvc.experiment"] for r in runs) == ["team-20", "team-24"]
    starts = sorted((r.info.start_time, r.info.end_time) for r in runs)
    assert starts[1][0] < starts[0][1], "the two experiments ran at the same time"
    for r in runs:
        assert r.info.status == "FINISHED"
        assert r.data.params["model.hidden_dim"] == r.data.tags["dvc.experiment"].removeprefix("team-")
        assert "train.learning_rate" in r.data.params
        assert {"test/rmse", "test/r2", "test/mae", "val/rmse"} <= set(r.data.metrics)
        assert len(client.get_metric_history(r.info.run_id, "val_curve/rmse")) >= 2  # the curve: each epoch
        log = run(["dvc", "queue", "logs", r.data.tags["dvc.experiment"]], root).stdout
        assert f"train: MLflow run {uri}/#/experiments/{experiment.experiment_id}/runs/{r.info.run_id}\n" in log
        assert "View run" not in log, "one link, Metallo's; MLflow's own (one per ended run) are left out"
        top = {f.path for f in client.list_artifacts(r.info.run_id)}
        assert {"figures", "metrics", "model"} <= top, top
        figures = {f.path for f in client.list_artifacts(r.info.run_id, "figures")}
        assert "figures/pred_vs_true.png" in figures
        assert {f"model/{name}" for name in MODEL_FILES} <= {
            f.path for f in client.list_artifacts(r.info.run_id, "model")
        }
    # Both evaluate stages registered their model in the server's registry (PostgreSQL), "best" among them.
    versions = client.search_model_versions("name = 'metallo'")
    assert {r.info.run_id for r in runs} <= {v.run_id for v in versions}
    assert client.get_model_version_by_alias("metallo", "best").run_id in {r.info.run_id for r in runs}
    predictions = pyfunc_predictions(uri, runs[0].info.run_id, root)
    assert list(predictions.columns) == ["dos_pred", "dos_lower", "dos_upper"] and len(predictions) == 2
    assert list(root.rglob("mlflow.db")) == [] and not (root / "mlartifacts").exists(), "nothing tracked locally"
    assert wait_until(lambda: not processes_in(root), EXIT_WAIT), f"queue workers left: {processes_in(root)}"


@pytest.mark.slow
def test_server_killed_during_training_leaves_complete_outputs_and_a_warning(
    stack, shared_project, tmp_path, monkeypatch
):
    state = team.up(stack)
    uri = state["tracking_uri"]
    account = sign_in(monkeypatch, stack)
    root = copy_project(shared_project, tmp_path / "project")
    params = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace("num_train_epochs: 2", f"num_train_epochs: {KILL_EPOCHS}"))

    def training_runs(client) -> list:
        """The runs of this training (found once it has logged its params)."""
        experiment = client.get_experiment_by_name("metallo")
        query = f"params.`train.num_train_epochs` = '{KILL_EPOCHS}'"
        return client.search_runs([experiment.experiment_id], query) if experiment else []

    log = tmp_path / "repro.log"
    with open(log, "w") as out:
        repro = subprocess.Popen(
            ["dvc", "repro"],
            cwd=root,
            env=project_env(MLFLOW_TRACKING_URI=uri, **account),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            logged = wait_until(lambda: training_runs(mlflow.MlflowClient(uri)), REPRO_TIMEOUT, poll=0.5)
            trained_before_kill = (root / "metrics/train.json").exists()
            kill_tree(state["mlflow"])
            repro.wait(timeout=REPRO_TIMEOUT)
        finally:
            if repro.poll() is None:
                os.killpg(repro.pid, signal.SIGKILL)
                repro.wait(timeout=EXIT_WAIT)
    output = log.read_text()
    assert logged and not trained_before_kill, "the server was killed during the training"
    assert repro.returncode == 0, output[-5000:]
    assert "MLflow tracking disabled" in output, output[-5000:]
    print(next(line for line in output.splitlines() if "MLflow tracking disabled" in line))
    for name in MODEL_FILES:
        assert (root / "models/model" / name).is_file()
    assert json.loads((root / "metrics/train.json").read_text())["epochs"] == KILL_EPOCHS
    assert {"rmse", "r2", "n"} <= set(json.loads((root / "metrics/eval.json").read_text())["test"])
    assert "up to date" in run(["dvc", "status"], root).stdout.lower()

    # `up` restarts only the server; the run and the params logged before the kill are in PostgreSQL.
    restarted = team.up(stack)
    assert restarted["postgres"]["pid"] == state["postgres"]["pid"]
    assert restarted["mlflow"]["pid"] != state["mlflow"]["pid"]
    assert [r.info.run_id for r in training_runs(mlflow.MlflowClient(restarted["tracking_uri"]))] == [
        logged[0].info.run_id
    ]


def http_status(uri: str, path: str, body: dict, method: str = "POST", auth: tuple[str, str] | None = None) -> int:
    """The status of one raw HTTP request, as ``curl`` would send it (no MLflow client, no credentials file)."""
    request = urllib.request.Request(
        f"{uri}{path}", data=json.dumps(body).encode(), method=method, headers={"Content-Type": "application/json"}
    )
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


#: The planting attack, one write at a time: a run, an uploaded MLmodel, a registered version, the alias.
WRITES = {
    "create a run": ("/api/2.0/mlflow/runs/create", {"experiment_id": "0"}, "POST"),
    "upload an MLmodel": ("/api/2.0/mlflow-artifacts/artifacts/0/planted/MLmodel", {"loader_module": "x"}, "PUT"),
    "create a registered model": ("/api/2.0/mlflow/registered-models/create", {"name": "planted"}, "POST"),
    "register a model version": (
        "/api/2.0/mlflow/model-versions/create",
        {"name": "metallo", "source": "mlflow-artifacts:/0/planted"},
        "POST",
    ),
    "move the alias best": (
        "/api/2.0/mlflow/registered-models/alias",
        {"name": "metallo", "alias": "best", "version": "1"},
        "POST",
    ),
}


@pytest.mark.slow
def test_the_server_refuses_writes_without_an_account_and_takes_them_from_one(stack, monkeypatch):
    uri = team.up(stack)["tracking_uri"]
    for name in ("credentials", "auth.ini", "secret-key", "password"):
        assert (stack / name).stat().st_mode & 0o777 == 0o600, name
    assert (stack / "artifacts").stat().st_mode & 0o777 == 0o700
    assert team.healthy(uri), "/health stays open (the stack's own start check)"
    for what, (path, body, method) in WRITES.items():
        assert http_status(uri, path, body, method) == 401, f"{what} without an account"
        assert http_status(uri, path, body, method, auth=("admin", "not-the-password")) == 401, what
    assert http_status(uri, "/api/2.0/mlflow/experiments/search", {"max_results": 1}) == 401, "reads too"

    added = team_cli("add-user", "alice", "--dir", str(stack))
    assert added.returncode == 0, added.stderr
    account = stack / "users" / "alice.credentials"
    assert account.stat().st_mode & 0o777 == 0o600
    password = team.read_credentials(account)["MLFLOW_TRACKING_PASSWORD"]
    assert str(account) in added.stdout and password not in added.stdout + added.stderr
    again = team_cli("add-user", "alice", "--dir", str(stack))
    assert again.returncode == 1 and "exists already" in again.stderr and "Traceback" not in again.stderr

    sign_in(monkeypatch, stack, account)  # a colleague with an account: the same writes work
    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("metallo").experiment_id
    run_id = client.create_run(experiment_id).info.run_id
    client.log_param(run_id, "who", "alice")
    client.set_terminated(run_id)
    version = client.create_model_version("metallo", source=f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias("metallo", "best", version.version)
    assert client.get_model_version_by_alias("metallo", "best").run_id == run_id
    assert (
        http_status(uri, "/api/2.0/mlflow/runs/create", {"experiment_id": experiment_id}, auth=("alice", password))
        == 200
    )
    # ... but an account is not the admin: no accounts of its own making, no deleting the team's experiment
    assert (
        http_status(
            uri, "/api/2.0/mlflow/users/create", {"username": "mallory", "password": "x" * 16}, auth=("alice", password)
        )
        == 403
    )
    assert (
        http_status(
            uri, "/api/2.0/mlflow/experiments/delete", {"experiment_id": experiment_id}, auth=("alice", password)
        )
        == 403
    )
