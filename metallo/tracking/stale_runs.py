"""Runs a killed training left RUNNING: who owns a run, and whether that process is gone.

Each training run is tagged with the process that owns it (``mlflow.metallo.pid``, ``mlflow.metallo.host``,
``mlflow.metallo.pid_start``: under ``mlflow.``, the prefix the MLflow UI keeps off the run page, because they
are bookkeeping, not a description of the run; runs tagged before with ``metallo.pid``... are still swept).
When ``train`` starts a run it marks KILLED every run of its experiment still RUNNING whose owner process
on this host is gone (a killed training cannot end its run);
runs of other hosts, or without an owner, are left alone.
"""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

from metallo.uris import masked

PID_TAG, HOST_TAG, START_TAG = "mlflow.metallo.pid", "mlflow.metallo.host", "mlflow.metallo.pid_start"
#: The names runs were tagged with before (shown on the run page); read when the new ones are missing.
OLD_TAGS = {PID_TAG: "metallo.pid", HOST_TAG: "metallo.host", START_TAG: "metallo.pid_start"}


def owner(tags: dict) -> dict[str, str]:
    """A run's owner tags under their current names (older runs carry the visible ``metallo.*`` names)."""
    return {key: tags.get(key, tags.get(old, "")) for key, old in OLD_TAGS.items()}


def process_start(pid: int) -> str:
    """The kernel's start time of process ``pid`` (Linux; ``""`` elsewhere): tells a reused PID apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_alive(pid: int, start: str = "") -> bool:
    """Whether process ``pid`` on this host still runs (and, when ``start`` is known, is the same process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):  # killed, not yet reaped
            return False
    except (OSError, IndexError):
        pass
    return not (start and process_start(pid) and process_start(pid) != start)


def owner_tags() -> dict[str, str]:
    """Tags naming the process that owns a run."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), START_TAG: process_start(os.getpid())}


def stale_runs(client, experiment_id: str) -> list:
    """RUNNING runs of the experiment whose owner process on this host is gone."""
    from mlflow.entities import ViewType

    host = socket.gethostname()
    stale = []
    for run in client.search_runs(
        [experiment_id],
        filter_string="attributes.status = 'RUNNING'",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=1000,
    ):
        tags = owner(run.data.tags)
        if tags.get(HOST_TAG) != host or not str(tags.get(PID_TAG, "")).isdigit():
            continue  # another machine's run, or one without an owner: leave it alone
        if process_alive(int(tags[PID_TAG]), tags.get(START_TAG, "")):
            continue
        # Read the status again now that the owner is known to be gone: an owner that ended its run normally
        # wrote FINISHED before it exited, so a run still RUNNING here was really abandoned (a queued
        # experiment finishing while another one sweeps is not taken for a killed one).
        if client.get_run(run.info.run_id).info.status == "RUNNING":
            stale.append(run)
    return stale


def end_stale_runs(client, experiment_id: str) -> list[str]:
    """Mark KILLED the experiment's RUNNING runs whose process is gone; return their ids."""
    ended = []
    try:
        for stale in stale_runs(client, experiment_id):
            client.set_terminated(stale.info.run_id, "KILLED")
            ended.append(stale.info.run_id)
            print(
                f"tracking: marked run {stale.info.run_id} KILLED (its process {owner(stale.data.tags)[PID_TAG]} "
                "on this host is gone)"
            )
    except Exception as err:  # noqa: BLE001 - cleaning up old runs must not stop this one
        warnings.warn(
            masked(f"MLflow: could not check for runs left RUNNING by killed trainings ({err})"), stacklevel=2
        )
    return ended
