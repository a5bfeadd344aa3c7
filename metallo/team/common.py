"""What the team stack's parts share: the address, the bounds on every wait, the folder layout, free ports,
and the processes recorded in the state file (found again only when each PID is still the same process)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

import psutil

from metallo.errors import MetalloError

HOST = "127.0.0.1"
DEFAULT_DIR = ".team"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


class Layout:
    """The files of one team stack under ``folder``."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).resolve()
        self.pg_root = self.folder / "postgres"
        self.pg_data = self.pg_root / "data"
        self.pg_log = self.pg_root / "server.log"
        self.artifacts = self.folder / "artifacts"
        self.mlflow_log = self.folder / "mlflow.log"
        self.password = self.folder / "password"
        self.state = self.folder / "state.json"
        # MLflow's basic-auth app (metallo/team/auth.py); every file below is mode 0600
        self.auth_ini = self.folder / "auth.ini"
        self.credentials = self.folder / "credentials"
        self.secret_key = self.folder / "secret-key"
        self.users = self.folder / "users"

    def read_state(self) -> dict:
        """What ``up`` recorded (``{}`` before the first ``up``); a damaged file is a clear error."""
        if not self.state.is_file():
            return {}
        try:
            state = json.loads(self.state.read_text())
        except (ValueError, UnicodeDecodeError):
            state = None
        if not isinstance(state, dict):
            raise MetalloError(
                f"team: {self.state} is damaged (not the JSON object `up` writes; a crash while writing it?). "
                "It only records ports and process ids: stop any postgres or mlflow process still running from "
                f"{self.folder} (see `ps -ef | grep {self.folder}`), delete {self.state}, then run `up` again; "
                "the database and the artifacts are kept."
            )
        return state

    def write_state(self, state: dict) -> None:
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state)


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (mode 0600, also when the file existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def port_free(port: int) -> bool:
    """Whether nothing listens on ``127.0.0.1:port`` and it can be bound."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no obstacle
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when it is free (a restarted stack keeps its URI), else a port the kernel picks."""
    if preferred and port_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def process_entry(pid: int, port: int) -> dict:
    """What the state file records of a started process: its PID, its start time and its port."""
    return {"pid": pid, "created": psutil.Process(pid).create_time(), "port": port}


def process_of(entry: dict | None) -> psutil.Process | None:
    """The running process a state entry names, or ``None`` (gone, a zombie, or its PID now another process)."""
    if not entry or not entry.get("pid"):
        return None
    try:
        process = psutil.Process(int(entry["pid"]))
        if abs(process.create_time() - float(entry.get("created", 0))) > 0.01:
            return None
        return None if process.status() == psutil.STATUS_ZOMBIE else process
    except psutil.Error:
        return None


def alive(entry: dict | None) -> bool:
    return process_of(entry) is not None


def stop_tree(entry: dict) -> None:
    """Stop the recorded process and its descendants (the MLflow server, uvicorn and its workers)."""
    process = process_of(entry)
    if process is not None:
        end_processes([*process.children(recursive=True), process], terminate=True)


def end_processes(processes: list[psutil.Process], terminate: bool = False) -> None:
    """Wait for ``processes`` to exit (SIGTERM first when ``terminate``), SIGKILL what is left after the timeout."""
    if terminate:
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.terminate()
    _, left = psutil.wait_procs(processes, timeout=STOP_TIMEOUT_S)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    _, left = psutil.wait_procs(left, timeout=STOP_TIMEOUT_S)
    if left:
        raise MetalloError(f"team: processes {[p.pid for p in left]} did not exit after SIGKILL.")


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
