"""`metallo ui` as a user starts it: one uvicorn worker and no MLflow job runner (issue 25).

A real MLflow server on a free 127.0.0.1 port with a SQLite store in a temporary folder; nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.helpers.project import REPO, project_env

pytestmark = pytest.mark.slow

#: The ``metallo ui`` process (it execs ``python -m mlflow ui``), the uvicorn server MLflow starts, one worker
#: at most: MLflow's defaults start 4 workers and a job runner with its consumers (16 processes in all).
MAX_PROCESSES = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ui_starts_one_worker_without_the_job_runner(tmp_path):
    import psutil

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "metallo.cli", "ui", "--port", str(port)],
        cwd=tmp_path,
        env=project_env(PYTHONPATH=str(REPO)),  # this checkout's metallo
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("the MLflow UI did not answer within 240 s")
        time.sleep(3)  # anything MLflow starts after the first answer has started by now
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        commands = [" ".join(p.cmdline()) for p in tree]
        assert len(tree) <= MAX_PROCESSES, commands
        assert not [c for c in commands if "huey" in c or "job" in c], commands
        assert any("--workers 1" in c or "--workers=1" in c for c in commands), commands
        rss = sum(p.memory_info().rss for p in tree) / 2**20
        print(f"metallo ui: {len(tree)} processes, {rss:.0f} MiB RSS")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
