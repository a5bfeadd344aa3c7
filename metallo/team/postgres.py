"""PostgreSQL for the team stack: the machine's server programs, a cluster of our own on 127.0.0.1 (TCP only),
run as the ``postgres`` user when Metallo runs as root, and the MLflow database in it."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import psutil

from metallo.errors import MetalloError
from metallo.team.common import (
    HOST,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Layout,
    end_processes,
    process_entry,
    process_of,
    write_secret,
)

DB_USER = "metallo"
DB_NAME = "mlflow"
#: The database of the MLflow server's users and permissions (metallo/team/auth.py).
AUTH_DB_NAME = "mlflow_auth"
#: The unprivileged account that runs PostgreSQL when Metallo runs as root.
SERVICE_USER = "postgres"
INSTALL_HINT = (
    "Install PostgreSQL's server programs with `apt-get install postgresql` (Debian/Ubuntu; the team "
    "stack starts its own server in the project, the system service is not needed), or set "
    "METALLO_PG_BIN to the folder that holds initdb and pg_ctl."
)


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
        write_secret(layout.password, secrets.token_urlsafe(24))
    pwfile = layout.pg_root / "initdb-password"
    write_secret(pwfile, layout.password.read_text())
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


def serves(pid: int, data: Path) -> bool:
    """Whether process ``pid`` is a PostgreSQL server running on the cluster in ``data`` (its working folder)."""
    try:
        process = psutil.Process(pid)
        return process.name().startswith("postgres") and Path(process.cwd()).resolve() == data.resolve()
    except (psutil.Error, OSError):
        return False


def clear_stale_pid_file(layout: Layout) -> None:
    """Remove a ``postmaster.pid`` a crash left behind (empty, unreadable, or naming a PID that is no PostgreSQL
    server of this cluster: PostgreSQL would refuse to start); a server that does run on the cluster is an error
    that says how to stop it."""
    pid_file = layout.pg_data / "postmaster.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text(errors="replace").split("\n", 1)[0].strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None and serves(pid, layout.pg_data):
        raise MetalloError(
            f"team: a PostgreSQL server (pid {pid}) already runs on {layout.pg_data}, but not one this stack "
            f"recorded in {layout.state}. Stop it (pg_ctl -D {layout.pg_data} stop, as the '{SERVICE_USER}' user "
            "when you are root), then run `up` again."
        )
    pid_file.unlink()
    why = "empty or unreadable" if pid is None else f"pid {pid} is no PostgreSQL server of this cluster"
    print(f"team: removed the stale {pid_file} (left by a crash: {why})")


def start_postgres(layout: Layout, bin_dir: Path, port: int) -> dict:
    """``pg_ctl start`` on ``127.0.0.1:port`` (TCP only), after :func:`clear_stale_pid_file`; returns the
    postmaster's state entry."""
    clear_stale_pid_file(layout)
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


def ensure_database(port: int, password: str, names: tuple[str, ...] = (DB_NAME, AUTH_DB_NAME)) -> None:
    """Create the MLflow databases (runs, accounts) that do not exist yet (psycopg, SQLAlchemy's default PostgreSQL
    driver)."""
    try:
        import psycopg
    except ImportError:
        raise MetalloError("team: the PostgreSQL driver psycopg is missing: pip install -r requirements.txt") from None
    with psycopg.connect(
        host=HOST, port=port, user=DB_USER, password=password, dbname="postgres", connect_timeout=10, autocommit=True
    ) as connection:
        for name in names:
            if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                connection.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))


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
