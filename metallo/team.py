"""A local team stack: PostgreSQL and an MLflow tracking server on 127.0.0.1, from the project's own files.

    python -m metallo.team up        # make team-up: start (or finish starting) the stack, print the URI
    python -m metallo.team status    # what runs, on which ports
    python -m metallo.team down      # make team-down: stop exactly what ``up`` started

Everything lives in one folder (``--dir``, default ``.team`` in the project)::

    .team/postgres/data     the PostgreSQL cluster (initdb), kept between down and up
    .team/postgres/server.log
    .team/artifacts         the MLflow server's artifact store (--artifacts-destination), kept as well
    .team/mlflow.log
    .team/password          the database password (mode 0600)
    .team/state.json        ports, PIDs and process start times of what runs

PostgreSQL comes from the machine's server programs (``initdb``, ``pg_ctl`` under
``/usr/lib/postgresql/<version>/bin``, or ``METALLO_PG_BIN``) and listens on 127.0.0.1 only (no
Unix socket, no system service). PostgreSQL refuses to run as root: as root, the cluster belongs to
the ``postgres`` user and its programs run through ``runuser -u postgres``. The MLflow server stores
runs in that database (``postgresql://``, through psycopg) and serves artifacts from the folder
standing for an object store. Every wait is bounded; ``down`` signals only the processes recorded by ``up``
(and the MLflow server's descendants), after checking that each PID is still the same process (its start time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from metallo.errors import MetalloError, exit_on_error

HOST = "127.0.0.1"
DEFAULT_DIR = ".team"
DB_USER = "metallo"
DB_NAME = "mlflow"
#: The unprivileged account that runs PostgreSQL when Metallo runs as root.
SERVICE_USER = "postgres"
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
MLFLOW_WORKERS = 2
INSTALL_HINT = (
    "Install PostgreSQL's server programs with `apt-get install postgresql` (Debian/Ubuntu; the team "
    "stack starts its own server in the project, the system service is not needed), or set "
    "METALLO_PG_BIN to the folder that holds initdb and pg_ctl."
)


# ------------------------------------------------------------------------------------------------
# where things are
# ------------------------------------------------------------------------------------------------


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

    def read_state(self) -> dict:
        return json.loads(self.state.read_text()) if self.state.is_file() else {}

    def write_state(self, state: dict) -> None:
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state)


def postgres_bin() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: ``METALLO_PG_BIN``, the newest Debian one, or ``PATH``."""
    wanted = os.environ.get("METALLO_PG_BIN")
    if wanted:
        candidates = [Path(wanted)]
    else:
        versions = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
        on_path = shutil.which("pg_ctl")
        candidates = versions + ([Path(on_path).parent] if on_path else [])
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl")):
            return folder
    where = f"METALLO_PG_BIN={wanted}" if wanted else "/usr/lib/postgresql/*/bin or on PATH"
    raise MetalloError(f"PostgreSQL's server programs (initdb, pg_ctl) were not found in {where}. {INSTALL_HINT}")


def running_as_root() -> bool:
    return os.geteuid() == 0


def as_service_user(cmd: list[str]) -> list[str]:
    """``cmd`` as it must run: through ``runuser -u postgres`` when we are root, unchanged otherwise."""
    return ["runuser", "-u", SERVICE_USER, "--", *cmd] if running_as_root() else cmd


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


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ------------------------------------------------------------------------------------------------
# PostgreSQL
# ------------------------------------------------------------------------------------------------


def run_pg(cmd: list[str], what: str, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program (as the service user when root); a failure becomes a :class:`MetalloError`."""
    try:
        result = subprocess.run(
            as_service_user(cmd), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise MetalloError(f"team: {what} did not finish within {timeout:.0f} s.") from None
    if result.returncode != 0:
        raise MetalloError(f"team: {what} failed ({result.returncode}):\n{(result.stdout + result.stderr).strip()}")
    return result


def give_to_service_user(path: Path) -> None:
    """As root, make ``path`` the service user's and check that the user can reach it."""
    if not running_as_root():
        return
    try:
        shutil.chown(path, user=SERVICE_USER, group=SERVICE_USER)
    except LookupError:
        raise MetalloError(
            f"team: PostgreSQL refuses to run as root, and there is no '{SERVICE_USER}' user to run "
            f"it. {INSTALL_HINT} (the package creates that user), or run as an ordinary user."
        ) from None
    check = subprocess.run(["runuser", "-u", SERVICE_USER, "--", "test", "-w", str(path)], timeout=30)
    if check.returncode != 0:
        raise MetalloError(
            f"team: PostgreSQL runs as the '{SERVICE_USER}' user when you are root, and that user "
            f"cannot reach {path}: a folder above it is closed to other users. Choose a --dir under "
            f"folders it can enter (e.g. chmod o+x on the closed parent, or --dir /srv/metallo-team)."
        )


def init_cluster(layout: Layout, bin_dir: Path) -> None:
    """``initdb`` a new cluster with a password-protected role (only the first time)."""
    if (layout.pg_data / "PG_VERSION").is_file():
        return
    layout.pg_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    give_to_service_user(layout.pg_root)
    if not layout.password.is_file():
        layout.password.touch(mode=0o600)
        layout.password.write_text(secrets.token_urlsafe(24))
    pwfile = layout.pg_root / "initdb-password"
    pwfile.touch(mode=0o600)
    pwfile.write_text(layout.password.read_text())
    give_to_service_user(pwfile)
    try:
        run_pg(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(layout.pg_data),
                "-U",
                DB_USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
            "initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)


def start_postgres(layout: Layout, bin_dir: Path, port: int) -> dict:
    """``pg_ctl start`` on ``127.0.0.1:port`` (TCP only); returns the postmaster's state entry."""
    options = f"-c listen_addresses={HOST} -p {port} -c unix_socket_directories=''"
    run_pg(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(layout.pg_data),
            "-l",
            str(layout.pg_log),
            "-o",
            options,
            "-w",
            "-t",
            str(int(START_TIMEOUT_S)),
            "start",
        ],
        f"PostgreSQL start (log: {layout.pg_log})",
        timeout=START_TIMEOUT_S + 10,
    )
    return process_entry(int((layout.pg_data / "postmaster.pid").read_text().split()[0]), port)


def ensure_database(port: int, password: str) -> None:
    """Create the MLflow database when it does not exist yet (psycopg, SQLAlchemy's default PostgreSQL driver)."""
    try:
        import psycopg
    except ImportError:
        raise MetalloError("team: the PostgreSQL driver psycopg is missing: pip install -r requirements.txt") from None
    with psycopg.connect(
        host=HOST, port=port, user=DB_USER, password=password, dbname="postgres", connect_timeout=10, autocommit=True
    ) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone() is None:
            connection.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(DB_NAME)))


def stop_postgres(layout: Layout, bin_dir: Path | None, entry: dict) -> None:
    """``pg_ctl stop -m fast`` of our cluster; SIGKILL of the recorded postmaster if that fails."""
    process = process_of(entry)
    if process is None:
        return
    if bin_dir is not None:
        subprocess.run(
            as_service_user(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(layout.pg_data),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(int(STOP_TIMEOUT_S)),
                    "stop",
                ]
            ),
            capture_output=True,
            timeout=STOP_TIMEOUT_S + 10,
        )
    end_processes([process])


# ------------------------------------------------------------------------------------------------
# MLflow server
# ------------------------------------------------------------------------------------------------


def backend_uri(port: int, password: str) -> str:
    return f"postgresql://{DB_USER}:{password}@{HOST}:{port}/{DB_NAME}"


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_mlflow(layout: Layout, port: int, backend: str) -> dict:
    """``mlflow server`` on ``127.0.0.1:port`` in its own session; waits for ``/health``."""
    layout.artifacts.mkdir(parents=True, exist_ok=True)
    # The backend URI holds the password: pass it in the environment, not on the command line. MLflow's
    # server-side job runner (GenAI jobs, which Metallo does not use) would add ~9 processes: off unless asked for.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ, "MLFLOW_BACKEND_STORE_URI": backend}
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


# ------------------------------------------------------------------------------------------------
# the commands
# ------------------------------------------------------------------------------------------------


def up(folder: str | os.PathLike = DEFAULT_DIR) -> dict:
    """Start what is not running yet; return the state (``tracking_uri`` among it).

    If a start fails, what this call started is stopped again before the error is raised.
    """
    layout = Layout(folder)
    bin_dir = postgres_bin()
    layout.folder.mkdir(parents=True, exist_ok=True)
    state = layout.read_state()
    started = False
    try:
        if not alive(state.get("postgres")):
            stop_tree(state.get("mlflow", {}))  # a server left without its database is restarted with it
            init_cluster(layout, bin_dir)
            started = True
            state["postgres"] = start_postgres(layout, bin_dir, free_port(state.get("postgres", {}).get("port")))
            layout.write_state(state)
        password = layout.password.read_text().strip()
        ensure_database(state["postgres"]["port"], password)
        if not alive(state.get("mlflow")):
            started = True
            port = free_port(state.get("mlflow", {}).get("port") or 5000)
            state["mlflow"] = start_mlflow(layout, port, backend_uri(state["postgres"]["port"], password))
    except BaseException:
        if started:
            down(layout.folder)
        raise
    state["tracking_uri"] = f"http://{HOST}:{state['mlflow']['port']}"
    layout.write_state(state)
    return state


def down(folder: str | os.PathLike = DEFAULT_DIR) -> dict:
    """Stop the MLflow server, then PostgreSQL; keep the data, the artifacts and the ports for the next ``up``."""
    layout = Layout(folder)
    state = layout.read_state()
    if not state:
        return state
    stop_tree(state.get("mlflow", {}))
    try:
        bin_dir = postgres_bin()
    except MetalloError:
        bin_dir = None
    stop_postgres(layout, bin_dir, state.get("postgres", {}))
    kept = {
        name: {"port": entry["port"]} for name, entry in state.items() if isinstance(entry, dict) and "port" in entry
    }
    layout.write_state(kept)
    return kept


def describe(layout: Layout, state: dict) -> str:
    """What runs, for people."""
    pg, server = state.get("postgres", {}), state.get("mlflow", {})
    lines = [f"team stack in {layout.folder}"]
    lines.append(
        f"  PostgreSQL     {HOST}:{pg.get('port', '-')}  "
        + (f"pid {pg['pid']} (data {layout.pg_data})" if alive(pg) else "stopped")
    )
    lines.append(
        f"  MLflow server  http://{HOST}:{server.get('port', '-')}  "
        + (f"pid {server['pid']} (artifacts {layout.artifacts})" if alive(server) else "stopped")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m metallo.team", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--dir", default=DEFAULT_DIR, help="the stack's folder (default: %(default)s)")
    args = parser.parse_args(argv)
    layout = Layout(args.dir)
    with exit_on_error():
        if args.command == "up":
            state = up(layout.folder)
            print(describe(layout, state))
            print("Point Metallo (and dvc exp run / dvc queue start) at it:")
            print(f"export MLFLOW_TRACKING_URI={state['tracking_uri']}")
        elif args.command == "down":
            down(layout.folder)
            print(describe(layout, layout.read_state()))
        else:
            state = layout.read_state()
            print(describe(layout, state))
            if alive(state.get("mlflow")):
                print(f"export MLFLOW_TRACKING_URI={state['tracking_uri']}")


if __name__ == "__main__":
    main()
