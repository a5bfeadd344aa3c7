"""Accounts on the team's MLflow server: MLflow's own basic-auth app (``mlflow server --app-name basic-auth``).

Without a user name and password the server answers every request but ``/health`` with 401, so another local
account can neither read nor write runs, artifacts or registered models. The stack's folder holds (mode 0600):

* ``auth.ini``: MLflow's auth configuration (``MLFLOW_AUTH_CONFIG_PATH``): users and permissions in the
  PostgreSQL database ``mlflow_auth``, :data:`DEFAULT_PERMISSION` on what an account has not been granted;
* ``credentials``: the admin account ``up`` creates, in the format of MLflow's own credentials file
  (``~/.mlflow/credentials``), so it can be copied there;
* ``secret-key``: the Flask secret key the server's workers share;
* ``users/NAME.credentials``: the accounts :func:`add_user` made, in the same format.

An account reads every experiment and model (READ) and manages what it creates; :func:`add_user` grants it
EDIT on the project's experiment and registered model, so its trainings log there and its evaluations
register versions and move the alias ``best``. Only the admin can create accounts or change permissions.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from metallo.errors import MetalloError
from metallo.team.common import Layout, write_secret
from metallo.uris import masked

ADMIN_USER = "admin"
#: What an account may do with experiments and models it neither created nor was granted.
DEFAULT_PERMISSION = "READ"
#: What :func:`add_user` grants on the project's experiment and registered model.
USER_PERMISSION = "EDIT"
#: MLflow's credentials file, which its clients read when MLFLOW_TRACKING_USERNAME/PASSWORD are not set.
MLFLOW_CREDENTIALS = "~/.mlflow/credentials"
USERNAME_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"


def credentials_text(user: str, password: str) -> str:
    """An MLflow credentials file (``[mlflow]`` with the lower-cased names of MLflow's two variables)."""
    return f"[mlflow]\n{USERNAME_ENV.lower()} = {user}\n{PASSWORD_ENV.lower()} = {password}\n"


def read_credentials(path: Path) -> dict[str, str]:
    """``{MLFLOW_TRACKING_USERNAME: ..., MLFLOW_TRACKING_PASSWORD: ...}`` from an MLflow credentials file."""
    config = configparser.ConfigParser(interpolation=None)
    try:
        config.read_string(path.read_text())
        section = config["mlflow"]
        return {USERNAME_ENV: section[USERNAME_ENV.lower()], PASSWORD_ENV: section[PASSWORD_ENV.lower()]}
    except (OSError, KeyError, configparser.Error) as err:
        raise MetalloError(
            f"team: cannot read the credentials in {path} ({type(err).__name__}: {err}). The admin's are written by "
            "`python -m metallo.team up`; a colleague's by `python -m metallo.team add-user NAME`."
        ) from None


def client_env(folder: str | os.PathLike) -> dict[str, str]:
    """The admin's MLflow client variables for the stack in ``folder`` (for scripts and tests)."""
    return read_credentials(Layout(folder).credentials)


def ensure_secrets(layout: Layout) -> None:
    """Create the admin's password and the server's secret key the first time (kept afterwards)."""
    if not layout.credentials.is_file():
        write_secret(layout.credentials, credentials_text(ADMIN_USER, secrets.token_urlsafe(24)))
    if not layout.secret_key.is_file():
        write_secret(layout.secret_key, secrets.token_urlsafe(32))


def server_env(layout: Layout, database_uri: str) -> dict[str, str]:
    """Write ``auth.ini`` (0600: it holds the database password) and return the server's auth variables."""
    ensure_secrets(layout)
    config = configparser.ConfigParser(interpolation=None)
    config["mlflow"] = {
        "default_permission": DEFAULT_PERMISSION,
        "database_uri": database_uri,
        "admin_username": ADMIN_USER,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    text = io.StringIO()
    config.write(text)
    write_secret(layout.auth_ini, text.getvalue())
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(layout.auth_ini),
        # read only the first time, when the accounts database has no admin yet
        "MLFLOW_AUTH_ADMIN_PASSWORD": read_credentials(layout.credentials)[PASSWORD_ENV],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": layout.secret_key.read_text().strip(),
    }


@contextlib.contextmanager
def as_account(env: dict[str, str]) -> Iterator[None]:
    """MLflow clients in this process use the account in ``env`` inside the block."""
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def add_user(folder: str | os.PathLike, tracking_uri: str, name: str, experiment: str, model: str) -> Path:
    """Create the account ``name`` (as the admin), grant it :data:`USER_PERMISSION` on ``experiment`` and the
    registered model ``model`` (created when missing), and write its credentials file (0600); return its path."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    layout = Layout(folder)
    target = layout.users / f"{name}.credentials"
    password = secrets.token_urlsafe(18)
    try:
        with as_account(read_credentials(layout.credentials)):
            accounts = get_app_client("basic-auth", tracking_uri=tracking_uri)
            if _exists(accounts, name):
                raise MetalloError(
                    f"team: the account {name!r} exists already. Choose another name, or change its password with "
                    "MLflow's own API (mlflow.server.get_app_client('basic-auth', ...).update_user_password)."
                )
            accounts.create_user(name, password)
            client = mlflow.MlflowClient(tracking_uri)
            found = client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else client.create_experiment(experiment)
            try:
                client.get_registered_model(model)
            except MlflowException:
                client.create_registered_model(model, description="Metallo DOS regressors (registered by `evaluate`).")
            accounts.grant_user_permission(name, "experiment", experiment_id, USER_PERMISSION)
            accounts.grant_user_permission(name, "registered_model", model, USER_PERMISSION)
    except MlflowException as err:
        raise MetalloError(
            masked(f"team: could not create the account {name!r} at {tracking_uri}: {err.message}")
        ) from None
    layout.users.mkdir(mode=0o700, exist_ok=True)
    write_secret(target, credentials_text(name, password))
    return target


def _exists(accounts, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        accounts.get_user(name)
    except MlflowException:
        return False
    return True
