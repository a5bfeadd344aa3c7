"""Soak: kill ``dvc repro`` / ``dvc exp run`` at random moments, again and again, and recover.

On a tiny project (tests/conftest.py), for ``METALLO_SOAK_SECONDS`` (default 120 s; ``make soak``
runs 900 s), each round starts a forced ``dvc repro -f`` or a ``dvc exp run -S`` of a fresh
learning rate in its own process group, SIGKILLs the whole group after a random delay, runs
``dvc repro`` to completion and checks the project: DVC clean, data outputs identical to an
uninterrupted run (``shared_project``), complete metrics and model folder, no ``*.tmp*`` left by an
atomic write, and no MLflow run left RUNNING. Once per soak two experiments are queued and run
with ``dvc queue start -j 2``. The delays come from a seeded RNG: the seed is printed, and
``METALLO_SOAK_SEED=<seed>`` replays the same schedule. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers.processes import processes_in, wait_until
from tests.helpers.project import TINY_PARAMS, make_project, project_env, run
from tests.helpers.queue import queue_done, queue_report, start_queue

#: Every wait in this file is bounded by one of these (seconds).
REPRO_TIMEOUT = 900
KILL_WAIT = 30
QUEUE_TIMEOUT = 1200
EXIT_WAIT = 60
MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "calibration.json")
OUTPUT_DIRS = ("data", "models", "metrics", "checkpoints")
TERMINAL = {"FINISHED", "FAILED", "KILLED"}


def _data_hashes(root: Path) -> dict[str, str]:
    """sha256 of data/processed/*.npy and of every file under data/split."""
    files = sorted((root / "data/processed").glob("*.npy")) + sorted(
        p for p in (root / "data/split").rglob("*") if p.is_file()
    )
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _session_processes(session: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == session and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _running_stage(session: int) -> str | None:
    for proc in _session_processes(session):
        try:
            match = re.search(r"stages\.(\w+)", " ".join(proc.cmdline()))
        except psutil.Error:
            continue
        if match:
            return match.group(1)
    return None


def _start_and_kill(cmd: list[str], root: Path, delay: float, log: Path) -> tuple[str | None, int | None, float]:
    """Start ``cmd`` in a new session, SIGKILL its process group after ``delay`` s.

    Returns (stage running at the kill or None, exit code if it ended by itself before the kill, seconds it ran).
    """
    with open(log, "w") as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            cmd, cwd=root, env=project_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            ended = wait_until(lambda: proc.poll() is not None, delay, poll=0.05)
            elapsed = time.monotonic() - started
            stage = None if ended else _running_stage(proc.pid)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=KILL_WAIT)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=KILL_WAIT)
        left = wait_until(lambda: not _session_processes(proc.pid), KILL_WAIT, poll=0.1)
        assert left, f"processes of the killed group {proc.pid} still alive: {_session_processes(proc.pid)}"
    return stage, (proc.returncode if ended else None), elapsed


def _mlflow_runs(root: Path) -> list:
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return client.search_runs(experiments, run_view_type=ViewType.ALL, max_results=10000) if experiments else []


def _weights_digest(root: Path) -> str:
    from metallo.tracking.lineage import model_digest

    return model_digest(root / "models/model")


def _check_project(root: Path, reference: dict[str, str], tracking_ran: bool = True) -> list[str]:
    """Everything wrong with a project after a completed ``dvc repro`` (empty when all is well).

    MLflow: the current model's test metrics are in a run tagged with its weights' digest. A run a killed
    training left RUNNING is marked KILLED by the next train or evaluate that executes; when DVC found
    every stage up to date (``tracking_ran`` false: no Metallo code ran), such a run may still be RUNNING.
    """
    problems = []
    status = run(["dvc", "status", "--json"], root, check=False)
    if status.returncode != 0 or json.loads(status.stdout or "null") != {}:
        problems.append(f"dvc status not clean: {status.stdout.strip()[:500]} {status.stderr.strip()[-500:]}")
    hashes = _data_hashes(root)
    if hashes != reference:
        differ = sorted(k for k in set(hashes) | set(reference) if hashes.get(k) != reference.get(k))
        problems.append(f"data outputs differ from the uninterrupted run: {differ[:10]}")
    try:
        evaluation = json.loads((root / "metrics/eval.json").read_text())
        if (
            not isinstance(evaluation, dict)
            or evaluation.get("n") != TINY_PARAMS["synthesize"]["samples_per_slice"]["2"]
        ):
            problems.append(f"metrics/eval.json incomplete: {str(evaluation)[:300]}")
    except (OSError, ValueError) as err:
        problems.append(f"metrics/eval.json unreadable: {err}")
    missing = [name for name in MODEL_FILES if not (root / "models/model" / name).is_file()]
    if missing:
        problems.append(f"models/model lacks {missing}")
    leftovers = sorted(
        str(p.relative_to(root)) for d in OUTPUT_DIRS if (root / d).exists() for p in (root / d).rglob("*.tmp*")
    )
    if leftovers:
        problems.append(f"temporary files left by interrupted atomic writes: {leftovers}")
    runs = _mlflow_runs(root)
    for r in runs:
        if r.info.status not in TERMINAL and tracking_ran:
            problems.append(
                f"MLflow run {r.info.run_id} left {r.info.status} "
                f"(owner pid {r.data.tags.get('mlflow.metallo.pid')}, "
                f"hidden_dim {r.data.params.get('model.hidden_dim')}, "
                f"lr {r.data.params.get('train.learning_rate')})"
            )
    digest = _weights_digest(root)
    evaluated = [
        r
        for r in runs
        if r.data.tags.get("metallo.model_digest") == digest
        and r.info.status == "FINISHED"
        and "test/rmse" in r.data.metrics
    ]
    if not evaluated:
        problems.append(f"no FINISHED MLflow run of the current model (digest {digest[:12]}) has test metrics")
    return problems


def _find(tree, name: str):
    """Every dict in ``dvc exp show --json`` output whose ``name`` is ``name`` and that carries ``data``."""
    if isinstance(tree, dict):
        if tree.get("name") == name and isinstance(tree.get("data"), dict):
            yield tree
        for value in tree.values():
            yield from _find(value, name)
    elif isinstance(tree, list):
        for value in tree:
            yield from _find(value, name)


def _queue_two_experiments(root: Path) -> list[str]:
    """Queue hidden_dim 12 and 20, run them two at a time; return what is wrong (empty when all is well)."""
    problems = []
    names = {}
    for dim in (12, 20):
        queued = run(["dvc", "exp", "run", "--queue", "-S", f"model.hidden_dim={dim}"], root)
        match = re.search(r"Queued experiment '([^']+)'", queued.stdout + queued.stderr)
        assert match, queued.stdout + queued.stderr
        names[dim] = match.group(1)
    start_queue(root, 2)
    status = wait_until(lambda: queue_done(root), QUEUE_TIMEOUT, poll=3)
    if status is None:
        problems.append(f"queued experiments not done within {QUEUE_TIMEOUT} s\n{queue_report(root)}")
        run(["dvc", "queue", "kill", *names.values()], root, check=False)
    elif "Failed" in status:
        problems.append(f"a queued experiment failed:\n{queue_report(root)}")
    run(["dvc", "queue", "stop"], root, check=False)

    shown = json.loads(run(["dvc", "exp", "show", "--json"], root).stdout)
    for dim, name in names.items():
        found = list(_find(shown, name))
        if not found:
            problems.append(f"experiment {name} (hidden_dim={dim}) missing from dvc exp show")
            continue
        data = found[0]["data"]
        metrics = ((data.get("metrics") or {}).get("metrics/eval.json") or {}).get("data") or {}
        params = json.dumps(data.get("params") or {})
        if not metrics:
            problems.append(f"experiment {name} (hidden_dim={dim}) has no metrics/eval.json in dvc exp show")
        if f'"hidden_dim": {dim}' not in params:
            problems.append(f"experiment {name} does not show hidden_dim={dim}")
    queued_runs = {}
    for r in _mlflow_runs(root):
        if r.data.params.get("model.hidden_dim") in ("12", "20"):
            queued_runs.setdefault(r.data.params["model.hidden_dim"], []).append(r)
    for dim in ("12", "20"):
        good = [r for r in queued_runs.get(dim, []) if r.info.status == "FINISHED" and "test/rmse" in r.data.metrics]
        if not good:
            problems.append(
                f"no FINISHED MLflow run with test metrics for hidden_dim={dim}: "
                f"{[(r.info.run_id, r.info.status) for r in queued_runs.get(dim, [])]}"
            )
    return problems


@pytest.mark.slow
@pytest.mark.soak
def test_soak_random_kills_then_repro_recovers(shared_project, tmp_path):
    seconds = float(os.environ.get("METALLO_SOAK_SECONDS", "120"))
    seed = int(os.environ.get("METALLO_SOAK_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    print(f"soak: seed {seed} (METALLO_SOAK_SEED={seed} replays the schedule), {seconds:.0f} s of kills")
    reference = _data_hashes(shared_project)
    assert reference, "the uninterrupted run produced no data outputs"
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}

    root = make_project(tmp_path / "project")
    started = time.monotonic()
    run(["dvc", "repro"], root)
    full = time.monotonic() - started
    lengths = {"repro -f": full, "exp run": full}  # the kills are spread over one uninterrupted run's length
    problems = [f"after the first repro: {p}" for p in _check_project(root, reference)]
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline results"], root)

    kills: list[tuple[int, str, float, str | None, bool]] = []  # (round, what, delay, stage hit, still running)
    soak_start = time.monotonic()
    while not kills or time.monotonic() - soak_start < seconds:
        n = len(kills) + 1
        if rng.random() < 0.5:
            what, cmd = "repro -f", ["dvc", "repro", "-f"]
        else:
            lr = round(rng.uniform(0.0005, 0.005), 6)  # a fresh value: no run-cache hit, train runs
            what, cmd = f"exp run lr={lr}", ["dvc", "exp", "run", "-S", f"train.learning_rate={lr}"]
        kind = what.split(" lr=")[0]
        delay = round(rng.uniform(0.2, 0.9 * lengths[kind]), 2)
        stage, ended, elapsed = _start_and_kill(cmd, root, delay, tmp_path / f"kill-{n}.log")
        if ended == 0:
            lengths[kind] = min(lengths[kind], elapsed)  # it ran to the end sooner: spread later kills over that
        if ended not in (None, 0):
            problems.append(
                f"round {n}: {what} failed by itself before the kill: "
                f"{(tmp_path / f'kill-{n}.log').read_text()[-1500:]}"
            )
        kills.append((n, what, delay, stage, ended is None))
        print(
            f"soak: kill {n}: {what}, SIGKILL after {delay:.2f} s, stage running: {stage or '-'}"
            f"{' (it had already ended)' if ended is not None else ''}"
        )
        recovered = run(["dvc", "repro"], root, check=False)
        if recovered.returncode != 0:
            problems.append(
                f"round {n}: dvc repro after the kill failed:\n{recovered.stdout[-1500:]}{recovered.stderr[-2000:]}"
            )
            break
        ran = re.search(r"Running stage '(train|evaluate)'", recovered.stdout) is not None
        problems += [f"round {n} ({what}, killed in {stage or '-'}): {p}" for p in _check_project(root, reference, ran)]
    during = [k for k in kills if k[3]]
    live = [k for k in kills if k[4]]
    print(
        f"soak: {len(kills)} rounds in {time.monotonic() - soak_start:.0f} s: {len(live)} kills of a running command, "
        f"{len(during)} during a stage ({', '.join(sorted({k[3] for k in during})) or '-'}); seed {seed}"
    )

    run(["git", "checkout", "--", "params.yaml"], root)  # the queued experiments start from the baseline
    run(["dvc", "repro"], root)
    problems += [f"queue: {p}" for p in _queue_two_experiments(root)]
    problems += [f"at the end: {p}" for p in _check_project(root, reference)]

    # No process of the test outlives it: children, and daemonised DVC queue workers in the project.
    wait_until(
        lambda: (
            not processes_in(tmp_path)
            and not [
                p
                for p in me.children(recursive=True)
                if p.pid not in before and p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            ]
        ),
        EXIT_WAIT,
    )
    leftover = {p.pid: p for p in processes_in(tmp_path)}
    leftover.update(
        {
            p.pid: p
            for p in me.children(recursive=True)
            if p.pid not in before and p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        }
    )
    described = []
    for proc in leftover.values():
        try:
            described.append(f"{proc.pid}: {' '.join(proc.cmdline())[:200]}")
            proc.kill()
        except psutil.Error:
            continue
    if described:
        problems.append(f"processes left behind: {described}")

    unique = list(dict.fromkeys(problems))
    assert not unique, f"seed {seed}, {len(live)} kills in {len(kills)} rounds:\n" + "\n".join(unique)
