"""deploy/compose.yaml, checked statically: the team stack after `make team-up` (PostgreSQL, MinIO, MLflow).

The development machine has no Docker daemon, so the file is parsed and its services, ports,
volumes and environment are checked against what Metallo, DVC and the MLflow server need.
"""

from __future__ import annotations

import re

import pytest
import yaml

from tests.helpers.project import REPO

DEPLOY = REPO / "deploy"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_services_and_their_order(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "minio", "buckets", "mlflow"}
    assert services["mlflow"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "buckets": {"condition": "service_completed_successfully"},
    }
    assert services["buckets"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    for name in ("postgres", "minio", "mlflow"):
        assert services[name]["healthcheck"]["test"], name


def test_every_published_port_is_on_the_loopback_interface(compose):
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    assert published["postgres"] == [], "only the MLflow server talks to the database"
    assert published["mlflow"] == ["127.0.0.1:5000:5000"]
    assert sorted(published["minio"]) == ["127.0.0.1:9000:9000", "127.0.0.1:9001:9001"]
    assert all(port.startswith("127.0.0.1:") for ports in published.values() for port in ports)


def test_data_lives_in_named_volumes(compose):
    assert set(compose["volumes"]) == {"postgres-data", "minio-data", "mlflow-auth"}
    assert compose["services"]["postgres"]["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    assert compose["services"]["minio"]["volumes"] == ["minio-data:/data"]
    assert compose["services"]["mlflow"]["volumes"] == ["mlflow-auth:/var/lib/mlflow-auth"]


def test_mlflow_server_asks_for_an_account(compose):
    """MLflow's basic-auth app, as `make team-up` runs it: settings in the image, secrets from deploy/.env."""
    mlflow = compose["services"]["mlflow"]
    command, env = mlflow["command"], mlflow["environment"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow/auth.ini"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD:?")
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"].startswith("${MLFLOW_SECRET_KEY:?")
    assert "COPY auth.ini /etc/mlflow/auth.ini" in (DEPLOY / "mlflow.Dockerfile").read_text()
    import configparser

    auth = configparser.ConfigParser()
    auth.read(DEPLOY / "auth.ini")
    assert auth["mlflow"]["default_permission"] == "READ" and auth["mlflow"]["admin_username"] == "admin"
    assert auth["mlflow"]["database_uri"] == "sqlite:////var/lib/mlflow-auth/basic_auth.db"  # in the volume
    assert "admin_password" not in auth["mlflow"], "the password comes from deploy/.env only"


def test_mlflow_server_stores_runs_in_postgres_and_artifacts_in_minio(compose):
    mlflow = compose["services"]["mlflow"]
    env = mlflow["environment"]
    assert re.fullmatch(
        r"postgresql://mlflow:\$\{POSTGRES_PASSWORD:\?[^}]+\}@postgres:5432/mlflow", env["MLFLOW_BACKEND_STORE_URI"]
    )
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"].startswith("${MINIO_ROOT_USER:?")
    assert env["AWS_SECRET_ACCESS_KEY"].startswith("${MINIO_ROOT_PASSWORD:?")
    command = mlflow["command"]
    assert command[:2] == ["mlflow", "server"] and "--serve-artifacts" in command
    assert command[command.index("--artifacts-destination") + 1] == "s3://mlflow/artifacts"
    assert command[command.index("--port") + 1] == "5000"
    buckets = " ".join(compose["services"]["buckets"]["entrypoint"])
    assert "mc mb --ignore-existing team/mlflow team/dvc" in buckets
    postgres = compose["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_USER"] == "mlflow" and postgres["POSTGRES_DB"] == "mlflow"


def test_workstation_environment_points_at_the_published_ports(compose):
    client = compose["x-metallo-client-env"]
    assert client["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert client["MLFLOW_TRACKING_USERNAME"] == "admin"
    assert client["MLFLOW_TRACKING_PASSWORD"] == "${MLFLOW_ADMIN_PASSWORD}"
    assert client["AWS_ACCESS_KEY_ID"] == "${MINIO_ROOT_USER}"
    assert client["AWS_SECRET_ACCESS_KEY"] == "${MINIO_ROOT_PASSWORD}"
    header = (DEPLOY / "compose.yaml").read_text()
    assert "dvc remote modify team endpointurl http://127.0.0.1:9000" in header


def test_secrets_come_from_the_env_file_and_every_variable_is_in_the_example():
    text = (DEPLOY / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{(\w+)", text))
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert (
        used
        == set(example)
        == {
            "POSTGRES_PASSWORD",
            "MINIO_ROOT_USER",
            "MINIO_ROOT_PASSWORD",
            "MLFLOW_ADMIN_PASSWORD",
            "MLFLOW_SECRET_KEY",
        }
    )
    assert not re.search(r"(PASSWORD|SECRET)\w*: (?!\$\{)", text), "no secret written into the compose file"


def test_mlflow_image_pins_match_requirements():
    pins = dict(
        line.split("==")
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    dockerfile = (DEPLOY / "mlflow.Dockerfile").read_text()
    assert f'"mlflow=={pins["mlflow"]}"' in dockerfile
    assert f'"psycopg[binary]=={pins["psycopg"]}"' in dockerfile and pins["psycopg"] == pins["psycopg-binary"]
    assert re.search(r'"boto3==[\d.]+"', dockerfile)
    for name in ("flask-wtf", "wtforms"):  # mlflow[auth], for the basic-auth app
        assert f'"{name}=={pins[name]}"' in dockerfile
