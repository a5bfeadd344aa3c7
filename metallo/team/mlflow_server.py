"""The team stack's MLflow tracking server: ``mlflow server`` on 127.0.0.1, runs in the PostgreSQL database,
artifacts served from the stack's folder, every request but ``/health`` authenticated by MLflow's basic-auth app
(accounts in :mod:`metallo.team.auth`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from metallo.errors import MetalloError
from metallo.team.auth import server_env
from metallo.team.common import HOST, START_TIMEOUT_S, Layout, log_tail, process_entry, stop_tree
from metallo.team.postgres import DB_NAME, DB_USER

MLFLOW_WORKERS = 2


def backend_uri(port: int, password: str, database: str = DB_NAME) -> str:
    return f"postgresql://{DB_USER}:{password}@{HOST}:{port}/{database}"


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_mlflow(layout: Layout, port: int, backend: str, accounts: str) -> dict:
    """``mlflow server`` on ``127.0.0.1:port`` in its own session, with MLflow's basic-auth app keeping its
    accounts in the database ``accounts`` (a URI); waits for ``/health``."""
    layout.artifacts.mkdir(mode=0o700, parents=True, exist_ok=True)
    layout.artifacts.chmod(0o700)  # runs and models are the server's to hand out, to accounts only
    # The backend URI and the auth settings hold passwords: pass them in the environment (and the 0600 auth.ini),
    # not on the command line. MLflow's server-side job runner (GenAI jobs, which Metallo does not use) would add
    # ~9 processes: off unless asked for.
    env = {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        **os.environ,
        "MLFLOW_BACKEND_STORE_URI": backend,
        **server_env(layout, accounts),
    }
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        HOST,
        "--port",
        str(port),
        "--artifacts-destination",
        layout.artifacts.as_uri(),
        "--serve-artifacts",
        "--workers",
        str(MLFLOW_WORKERS),
        "--app-name",
        "basic-auth",
    ]
    with open(layout.mlflow_log, "ab") as log:
        process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=layout.folder,
            start_new_session=True,
        )
    entry = process_entry(process.pid, port)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not healthy(url):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_tree(entry)
            why = "exited" if process.returncode is not None else f"did not answer within {START_TIMEOUT_S:.0f} s"
            raise MetalloError(
                f"team: the MLflow server {why}. Its log ({layout.mlflow_log}) ends with:\n"
                f"{log_tail(layout.mlflow_log)}"
            )
        time.sleep(0.5)
    return entry
