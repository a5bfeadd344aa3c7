"""DVC's experiment queue in a test: start workers without waiting on them, wait with a bound, and say
what was going on when the queue did not finish."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.helpers.processes import processes_in, wait_until
from tests.helpers.project import project_env, run

#: Where ``dvc queue start`` writes its own output, and where DVC keeps each worker's log.
START_LOG = Path(".dvc/tmp/queue-start.log")
WORKER_LOGS = Path(".dvc/tmp/exps/celery")
TAIL = 3000


def start_queue(root: Path, jobs: int, **env: str) -> None:
    """``dvc queue start -j jobs`` in ``root``, returning once the workers are spawned.

    Its output goes to a file, not a pipe: DVC spawns each worker from a forked helper process that keeps
    the caller's stdout open until the worker exits, so reading a pipe to its end would wait for the
    whole queue (and hit the pipe's timeout instead of the test's own bound).
    """
    log = root / START_LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        started = subprocess.run(
            ["dvc", "queue", "start", "-j", str(jobs)],
            cwd=root,
            env=project_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
    assert started.returncode == 0, f"dvc queue start failed:\n{log.read_text()}"


def queue_status(root: Path) -> str:
    return run(["dvc", "queue", "status"], root, check=False).stdout


def queue_done(root: Path) -> str | None:
    """``dvc queue status`` once nothing is queued or running any more, else ``None``."""
    status = queue_status(root)
    return None if re.search(r"\b(Queued|Running)\b", status) else status


def wait_for_queue(root: Path, timeout: float) -> str:
    """Wait until the queue in ``root`` has run every task; return ``dvc queue status``.

    After ``timeout`` seconds, fail with what a person would look at: the queue status, each task's log,
    each worker's log and the processes still running in the project.
    """
    status = wait_until(lambda: queue_done(root), timeout, poll=3)
    assert status, f"the queue did not finish within {timeout:.0f} s\n{queue_report(root)}"
    return status


def queue_report(root: Path) -> str:
    """The state of the queue in ``root``, for a failure message."""
    status = queue_status(root)
    parts = [f"$ dvc queue status\n{status}"]
    for task in re.findall(r"^([0-9a-f]{7})\s", status, flags=re.MULTILINE):
        logs = run(["dvc", "queue", "logs", task], root, check=False)
        parts.append(f"$ dvc queue logs {task}\n{(logs.stdout + logs.stderr)[-TAIL:]}")
    for path in sorted((root / WORKER_LOGS).glob("*.out")) + [root / START_LOG]:
        if path.exists():
            parts.append(f"--- {path.relative_to(root)}\n{path.read_text(errors='replace')[-TAIL:]}")
    processes = []
    for proc in processes_in(root):
        try:
            processes.append(f"{proc.pid} {proc.status()} {' '.join(proc.cmdline())[:200]}")
        except Exception as error:  # noqa: BLE001 - a process may end while we look at it
            processes.append(f"{proc.pid} ({error})")
    parts.append("--- processes in the project\n" + "\n".join(processes))
    return "\n".join(parts)
