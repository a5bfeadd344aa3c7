"""A local team stack: PostgreSQL and an MLflow tracking server on 127.0.0.1, from the project's own files.

    python -m metallo.team up        # make team-up: start (or finish starting) the stack, print the URI
    python -m metallo.team status    # what runs, on which ports
    python -m metallo.team down      # make team-down: stop exactly what ``up`` started
    python -m metallo.team add-user NAME   # an account for a colleague (credentials file in .team/users/)

Everything lives in one folder (``--dir``, default ``.team`` in the project)::

    .team/postgres/data     the PostgreSQL cluster (initdb), kept between down and up
    .team/postgres/server.log
    .team/artifacts         the MLflow server's artifact store (--artifacts-destination), kept as well
    .team/mlflow.log
    .team/password          the database password (mode 0600)
    .team/credentials       the MLflow server's admin account (mode 0600; MLflow's credentials-file format)
    .team/auth.ini          MLflow's basic-auth configuration, .team/secret-key its Flask key (both 0600)
    .team/users/            accounts made by ``add-user NAME`` (0600 each)
    .team/state.json        ports, PIDs and process start times of what runs

PostgreSQL comes from the machine's server programs (``initdb``, ``pg_ctl`` under
``/usr/lib/postgresql/<version>/bin``, or ``METALLO_PG_BIN``) and listens on 127.0.0.1 only (no
Unix socket, no system service). PostgreSQL refuses to run as root: as root, the cluster belongs to
the ``postgres`` user and its programs run through ``runuser -u postgres``. The MLflow server stores
runs in that database (``postgresql://``, through psycopg) and serves artifacts from the folder
standing for an object store; it asks every request for an account (MLflow's basic-auth app,
:mod:`metallo.team.auth`). Every wait is bounded; ``down`` signals only the processes recorded by ``up``
(and the MLflow server's descendants), after checking that each PID is still the same process (its start time).
"""

from metallo.team.auth import ADMIN_USER, add_user, client_env, read_credentials
from metallo.team.cli import describe, down, main, up
from metallo.team.common import (
    DEFAULT_DIR,
    HOST,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Layout,
    alive,
    end_processes,
    free_port,
    log_tail,
    port_free,
    process_entry,
    process_of,
    stop_tree,
    write_secret,
)
from metallo.team.mlflow_server import MLFLOW_WORKERS, backend_uri, healthy, start_mlflow
from metallo.team.postgres import (
    AUTH_DB_NAME,
    DB_NAME,
    DB_USER,
    INSTALL_HINT,
    SERVICE_USER,
    as_service_user,
    ensure_database,
    give_to_service_user,
    init_cluster,
    postgres_bin,
    run_pg,
    running_as_root,
    start_postgres,
    stop_postgres,
)

__all__ = [
    "ADMIN_USER",
    "AUTH_DB_NAME",
    "DB_NAME",
    "DB_USER",
    "DEFAULT_DIR",
    "HOST",
    "INSTALL_HINT",
    "MLFLOW_WORKERS",
    "SERVICE_USER",
    "START_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "Layout",
    "add_user",
    "alive",
    "as_service_user",
    "backend_uri",
    "client_env",
    "describe",
    "down",
    "end_processes",
    "ensure_database",
    "free_port",
    "give_to_service_user",
    "healthy",
    "init_cluster",
    "log_tail",
    "main",
    "port_free",
    "postgres_bin",
    "process_entry",
    "process_of",
    "read_credentials",
    "run_pg",
    "running_as_root",
    "start_mlflow",
    "start_postgres",
    "stop_postgres",
    "stop_tree",
    "up",
    "write_secret",
]
