"""End to end, as a user runs it: `dvc repro`, then `dvc exp run -S`, on a tiny project.

Real git, real DVC CLI, a real MLflow SQLite store; nothing is mocked.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from tests.helpers.project import run

pytestmark = pytest.mark.slow

EVAL_FIELDS = {"test", "baseline", "interval"}


@pytest.fixture(scope="module")
def repro_project(tmp_path_factory):
    from tests.helpers.project import make_project

    root = make_project(tmp_path_factory.mktemp("e2e") / "project")
    first = run(["dvc", "repro"], root)
    return root, first


def test_repro_builds_every_stage_and_writes_metrics(repro_project):
    root, first = repro_project
    for stage in ("synthesize", "ingest", "convert", "split", "train", "evaluate"):
        assert f"Running stage '{stage}'" in first.stdout
    report = json.loads((root / "metrics/eval.json").read_text())
    assert EVAL_FIELDS <= set(report)
    assert set(report["test"]) == {"mae", "rmse", "r2", "pearson", "n"} and report["test"]["n"] == 8
    assert set(report["baseline"]) == {"mean", "classical"}
    for baseline in report["baseline"].values():
        assert set(baseline) == {"mae", "rmse", "r2", "pearson"}
    assert report["interval"]["level"] == 0.9
    predictions = (root / "metrics/predictions.csv").read_text().splitlines()
    assert predictions[0] == "sample_id,dos_true,dos_pred,residual,dos_lower,dos_upper"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "calibration.json"):
        assert (root / "models/model" / name).is_file()
    figures = {p.relative_to(root / "metrics/figures").as_posix() for p in (root / "metrics/figures").rglob("*.png")}
    assert {"pred_vs_true.png", "residuals.png", "spectra_grid.png", "explanation/cells.png"} <= figures
    log = (root / "metrics/live/plots/metrics/train/loss.tsv").read_text().splitlines()  # dvclive: train/loss
    assert log[0] == "step\tloss"
    assert len(log) > 3


def test_second_repro_does_nothing(repro_project):
    root, _ = repro_project
    again = run(["dvc", "repro"], root)
    assert "Running stage" not in again.stdout
    status = run(["dvc", "status"], root)
    assert "up to date" in status.stdout.lower()


def test_exp_run_set_param_tracks_two_runs(repro_project):
    root, _ = repro_project
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline results"], root)
    exp = run(["dvc", "exp", "run", "-S", "model.hidden_dim=24"], root)
    assert "Running stage 'train'" in exp.stdout
    assert "Running stage 'ingest'" not in exp.stdout  # only train and evaluate depend on model params

    shown = json.loads(run(["dvc", "exp", "show", "--json"], root).stdout)
    text = json.dumps(shown)
    assert '"hidden_dim": 16' in text and '"hidden_dim": 24' in text

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("metallo")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    assert {r.data.params["model.hidden_dim"] for r in runs} == {"16", "24"}
    for r in runs:
        assert {"test/rmse", "test/r2", "test/mae", "test/pearson", "val/rmse"} <= set(r.data.metrics)
        assert r.data.tags["model.name"] == "metallonet"
        assert r.data.tags["data.hash"]
        assert "train.learning_rate" in r.data.params and "output_dir" not in r.data.params
    assert any(r.data.tags.get("dvc.experiment") for r in runs)
    assert experiment.artifact_location.startswith((root / "mlartifacts").as_uri())

    # The logged pyfunc model predicts from a dict of the two inputs.
    newest = max(runs, key=lambda r: r.info.start_time)
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    (logged,) = client.search_logged_models(
        [experiment.experiment_id], filter_string=f"source_run_id = '{newest.info.run_id}'"
    )
    model = mlflow.pyfunc.load_model(f"models:/{logged.model_id}")
    images = np.load(root / "data/processed/images.npy", mmap_mode="r")[:3]
    spectra = np.load(root / "data/processed/spectra.npy", mmap_mode="r")[:3]
    table = model.predict({"pixel_values": np.array(images), "spectra": np.array(spectra)}, params={"interval": 0.8})
    assert list(table.columns) == ["dos_pred", "dos_lower", "dos_upper"] and len(table) == 3
    assert np.isfinite(table["dos_pred"]).all() and (table["dos_lower"] <= table["dos_pred"]).all()
