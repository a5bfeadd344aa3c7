"""The stack's commands: ``up``, ``down`` and ``status`` (``python -m metallo.team``, ``make team-up`` etc.)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from metallo.errors import MetalloError, exit_on_error
from metallo.team.auth import ADMIN_USER, MLFLOW_CREDENTIALS, add_user
from metallo.team.common import DEFAULT_DIR, HOST, Layout, alive, free_port, stop_tree
from metallo.team.mlflow_server import backend_uri, start_mlflow
from metallo.team.postgres import (
    AUTH_DB_NAME,
    ensure_database,
    init_cluster,
    postgres_bin,
    start_postgres,
    stop_postgres,
)


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
            pg_port = state["postgres"]["port"]
            state["mlflow"] = start_mlflow(
                layout, port, backend_uri(pg_port, password), backend_uri(pg_port, password, AUTH_DB_NAME)
            )
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


def how_to_sign_in(credentials: Path, user: str) -> str:
    """How to use an account's credentials file (MLflow's clients read it, or the two variables)."""
    return (
        f"Sign in as {user!r} (the server refuses requests without an account): its password is in {credentials}\n"
        f"(mode 0600, MLflow's credentials format). Either install it as MLflow's credentials file:\n"
        f"  install -D -m 600 {credentials} {MLFLOW_CREDENTIALS}\n"
        "or export MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD with the two values in it."
    )


def main(argv: list[str] | None = None) -> None:
    package = sys.modules[__package__]  # metallo.team, imported before this module (importing it here is a cycle)
    parser = argparse.ArgumentParser(prog="python -m metallo.team", description=package.__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status", "add-user"))
    parser.add_argument("name", nargs="?", help="add-user: the new account's name")
    parser.add_argument("--dir", default=DEFAULT_DIR, help="the stack's folder (default: %(default)s)")
    parser.add_argument("--experiment", default="metallo", help="add-user: experiment to grant EDIT on (%(default)s)")
    parser.add_argument("--model", default="metallo", help="add-user: registered model to grant EDIT on (%(default)s)")
    args = parser.parse_args(argv)
    if (args.command == "add-user") != bool(args.name):
        parser.error("add-user takes the new account's name (and only add-user takes a name)")
    layout = Layout(args.dir)
    with exit_on_error():
        if args.command == "up":
            state = up(layout.folder)
            print(describe(layout, state))
            print("Point Metallo (and dvc exp run / dvc queue start) at it:")
            print(f"export MLFLOW_TRACKING_URI={state['tracking_uri']}")
            print(how_to_sign_in(layout.credentials, ADMIN_USER))
        elif args.command == "add-user":
            state = layout.read_state()
            if not alive(state.get("mlflow")):
                raise MetalloError(f"team: the MLflow server of {layout.folder} is not running; run `up` first.")
            path = add_user(layout.folder, state["tracking_uri"], args.name, args.experiment, args.model)
            print(
                f"account {args.name!r} created, with EDIT on experiment {args.experiment!r} and model {args.model!r}."
            )
            print(how_to_sign_in(path, args.name))
            print(f"Hand {path} to {args.name} (e.g. install -o {args.name} -m 600 ...), then delete it here.")
        elif args.command == "down":
            down(layout.folder)
            print(describe(layout, layout.read_state()))
        else:
            state = layout.read_state()
            print(describe(layout, state))
            if alive(state.get("mlflow")):
                print(f"export MLFLOW_TRACKING_URI={state['tracking_uri']}")
