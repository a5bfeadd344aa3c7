"""The stack's commands: ``up``, ``down`` and ``status`` (``python -m metallo.team``, ``make team-up`` etc.)."""

from __future__ import annotations

import argparse
import os

from metallo.errors import MetalloError, exit_on_error
from metallo.team.common import DEFAULT_DIR, HOST, Layout, alive, free_port, stop_tree
from metallo.team.mlflow_server import backend_uri, start_mlflow
from metallo.team.postgres import ensure_database, init_cluster, postgres_bin, start_postgres, stop_postgres


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
    import metallo.team as package

    parser = argparse.ArgumentParser(prog="python -m metallo.team", description=package.__doc__.split("\n\n")[0])
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
