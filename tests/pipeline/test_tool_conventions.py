"""Issue 15 on the tiny pipeline: what DVC, MLflow and Hugging Face users see.

Real git, DVC CLI, MLflow SQLite store and transformers Auto classes; nothing is mocked.
"""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.helpers.project import make_project, project_env, run

pytestmark = pytest.mark.slow

#: The PNGs `dvc plots show` lists: not pred_vs_true.png and residuals_vs_true.png, drawn there from predictions.csv
FIGURES = {"residuals.png", "spectra_grid.png", "explanation/cells.png"}
SERIES = {"train/loss", "train/learning_rate", "epoch", *(f"val_curve/{m}" for m in ("mae", "rmse", "r2", "pearson"))}
COMPARE = ["dvc", "exp", "show", "--only-changed", "--drop", "Created|.*/.*", "--md"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny project after `dvc repro`, committed; returns (root, the repro's output)."""
    root = make_project(tmp_path_factory.mktemp("native") / "project")
    first = run(["dvc", "repro"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "first results"], root)
    return root, first


def client(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def runs(root: Path) -> list:
    c = client(root)
    return c.search_runs([c.get_experiment_by_name("metallo").experiment_id], order_by=["attributes.start_time DESC"])


# ------------------------------------------------------------------------------------------------
# goal 6: quiet, informative output
# ------------------------------------------------------------------------------------------------


def test_training_prints_progress_lines_and_no_library_noise(project):
    _, first = project
    train = first.stdout.split("Running stage 'train'")[1].split("Running stage 'evaluate'")[0]
    assert "train: epoch 1/2  step 3/6  val RMSE" in train and "train: epoch 2/2  step 6/6" in train
    assert "ETA" in train
    output = first.stdout + first.stderr
    for noise in (
        "{'loss'",
        "{'eval_loss'",
        "Writing model shards",
        "Loading weights",
        "Downloading artifacts",
        "INFO mlflow",
        "UserWarning",
        "Add type hints",
        "mtime may not be reliable",
    ):
        assert noise not in output, noise


def test_mean_baseline_pearson_is_null(project):
    root, _ = project
    report = json.loads((root / "metrics/eval.json").read_text())
    assert report["baseline"]["mean"]["pearson"] is None


# ------------------------------------------------------------------------------------------------
# goals 1 and 2: dvclive outputs, plots, deterministic DVC outputs
# ------------------------------------------------------------------------------------------------


def test_dvclive_outputs_after_training(project):
    root, _ = project
    folder = root / "metrics/live/plots/metrics"
    series = {p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.tsv")}
    assert series == SERIES  # the names MLflow shows (tests/pipeline/test_metric_names.py)
    curve = pd.read_csv(root / "metrics/live/plots/metrics/train/loss.tsv", sep="\t")
    assert list(curve.columns) == ["step", "loss"] and list(curve["step"]) == [1, 2, 3, 4, 5, 6]
    for name in SERIES:  # one value per series and step
        steps = pd.read_csv(root / f"metrics/live/plots/metrics/{name}.tsv", sep="\t")["step"]
        assert steps.is_unique, name
    live = json.loads((root / "metrics/live/metrics.json").read_text())
    assert set(live) == {"step", "epoch"}  # progress only once training ends: the final metrics are train.json's
    summary = json.loads((root / "metrics/train.json").read_text())
    assert {"model", "epochs", "steps", "train_samples", "val_samples", "val"} <= set(summary)
    assert {"rmse", "r2", "mae", "pearson"} <= set(summary["val"])
    assert not {k for k in summary if "runtime" in k or "per_second" in k}


def test_plots_one_per_quantity_with_units_and_no_duplicate_images(project):
    root, _ = project
    shown = json.loads(run(["dvc", "plots", "show", "--json"], root).stdout)["data"]
    images = [name for name in shown if name.endswith(".png")]
    assert sorted(images) == sorted(f"metrics/figures/{name}" for name in FIGURES)  # each once
    vega = {name: plots[0]["content"] for name, plots in shown.items() if plots[0]["type"] == "vega"}
    assert set(vega) == {
        "Training loss",
        "Validation RMSE",
        "Predicted vs true DOS (test)",
        "Residuals vs true DOS (test)",
    }

    def titles(content: dict) -> set[str]:
        layers = [content, *content.get("layer", [])]
        found = {layer.get("encoding", {}).get(axis, {}).get("title") for layer in layers for axis in ("x", "y")}
        return found - {None}

    assert {"training step", "loss (standardised DOS)"} <= titles(vega["Training loss"])
    assert {"training step", "RMSE (DOS, label units)"} <= titles(vega["Validation RMSE"])
    assert {"true DOS (label units)", "predicted DOS (label units)"} <= titles(vega["Predicted vs true DOS (test)"])
    identity = vega["Predicted vs true DOS (test)"]["layer"][1]["encoding"]
    assert identity["x"]["field"] == identity["y"]["field"] == "dos_true"  # the dashed y = x line
    assert "predicted − true DOS (label units)" in titles(vega["Residuals vs true DOS (test)"])


def test_rerunning_train_and_evaluate_leaves_git_clean(project):
    root, _ = project
    assert "models/run.json" not in (root / "dvc.lock").read_text()  # the run id is not a DVC output
    assert run(["git", "check-ignore", "models/run.json"], root).returncode == 0
    for _ in range(2):
        again = run(["dvc", "repro", "-f", "train", "evaluate"], root)
        assert "Running stage 'train'" in again.stdout
        assert run(["git", "status", "--porcelain"], root).stdout == ""


# ------------------------------------------------------------------------------------------------
# goal 3: MLflow conventions
# ------------------------------------------------------------------------------------------------


def test_mlflow_run_has_source_tags_dataset_inputs_and_one_value_per_step(project):
    root, _ = project
    newest = runs(root)[0]
    tags = newest.data.tags
    commit = run(["git", "rev-parse", "HEAD"], root).stdout.strip()
    assert tags["mlflow.source.git.commit"] == commit
    assert tags["mlflow.source.name"] == "stages/train.py" and tags["mlflow.user"]
    assert "git.commit" not in tags
    inputs = {d.dataset.name: (d.dataset, {t.key: t.value for t in d.tags}) for d in newest.inputs.dataset_inputs}
    assert set(inputs) == {"train", "val", "test"}
    assert {name: tags["mlflow.data.context"] for name, (_, tags) in inputs.items()} == {
        "train": "training",
        "val": "validation",
        "test": "testing",
    }
    assert len({dataset.digest for dataset, _ in inputs.values()}) == 3
    assert all(str(root / "data/processed") in dataset.source for dataset, _ in inputs.values())
    c = client(root)
    for key in newest.data.metrics:
        steps = [m.step for m in c.get_metric_history(newest.info.run_id, key)]
        assert len(steps) == len(set(steps)), f"{key} has two values at one step: {collections.Counter(steps)}"


def test_logged_model_has_test_metrics_input_example_and_is_registered(project):
    root, _ = project
    c = client(root)
    all_runs = runs(root)
    newest = all_runs[0]
    models = c.search_logged_models(
        [newest.info.experiment_id], filter_string=f"source_run_id = '{newest.info.run_id}'"
    )
    assert len(models) == 1
    metrics = {m.key: m for m in models[0].metrics}
    report = json.loads((root / "metrics/eval.json").read_text())
    test_rmse = metrics["test/rmse"]
    assert test_rmse.value == pytest.approx(report["test"]["rmse"]) and test_rmse.dataset_name == "test"
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    info = mlflow.models.get_model_info(f"models:/{models[0].model_id}")
    assert info.saved_input_example_info is not None and info.signature is not None

    versions = c.search_model_versions("name = 'metallo'")
    assert {v.run_id for v in versions} == {r.info.run_id for r in all_runs}  # one version per evaluated run
    best = c.get_model_version_by_alias("metallo", "best")
    assert float(best.tags["test/rmse"]) == min(float(v.tags["test/rmse"]) for v in versions)
    # each version says where it came from and how it compares with the baselines; its LoggedModel links back
    assert "classical baseline" in best.description and "| model |" in best.description
    (version,) = [v for v in versions if v.run_id == newest.info.run_id]
    registered = json.loads(c.get_logged_model(models[0].model_id).tags["mlflow.modelVersions"])
    assert {"name": "metallo", "version": str(version.version)} in registered  # the UI's "Registered" link
    assert len({m.name for m in c.search_logged_models([newest.info.experiment_id])}) == len(all_runs)


def test_evaluate_finds_the_run_of_its_model_without_run_json(project):
    root, _ = project
    newest = runs(root)[0]
    n_versions = len(client(root).search_model_versions("name = 'metallo'"))
    (root / "models/run.json").unlink()
    result = run([sys.executable, "-m", "stages.evaluate"], root)
    assert "no MLflow run" not in result.stdout
    assert runs(root)[0].info.run_id == newest.info.run_id  # no new run
    history = client(root).get_metric_history(newest.info.run_id, "test/rmse")
    assert len(history) == 1  # the same model evaluated again logs nothing twice
    assert len(client(root).search_model_versions("name = 'metallo'")) == n_versions


# ------------------------------------------------------------------------------------------------
# issue 25: one name per quantity; what the MLflow UI opens on; no stale test metrics; a readable exp table
# ------------------------------------------------------------------------------------------------


def test_one_metric_name_scheme_in_json_mlflow_dvclive_and_pyfunc(project):
    from metallo import metric_names as names
    from metallo.prediction.mlflow_model import OUTPUTS

    root, _ = project
    newest = runs(root)[0]
    logged = newest.data.metrics  # the latest value of each metric
    report = json.loads((root / "metrics/eval.json").read_text())
    summary = json.loads((root / "metrics/train.json").read_text())
    for name, value in names.flat(report).items():  # test/rmse ... baseline/classical/rmse ... interval/coverage
        assert logged[name] == pytest.approx(value, rel=1e-6), name
    for name, value in names.flat({"val": summary["val"]}).items():  # the kept model's (the curve: val_curve/*)
        assert logged[name] == pytest.approx(value, rel=1e-6), name
    folder = root / "metrics/live/plots/metrics"
    curves = {p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.tsv")}
    assert curves <= set(logged)  # dvclive's series under MLflow's names
    trainer_names = {k for k in logged if k.startswith(("eval_", "test_", "train_")) or k in ("loss", "total_flos")}
    assert not trainer_names, f"metrics under the Trainer's own names: {trainer_names}"
    assert {k.split("/")[0] for k in logged} <= {
        "test",
        "baseline",
        "interval",
        "val",
        "val_curve",
        "train",
        "epoch",
        "fit",
    }
    assert OUTPUTS == ("dos_pred", "dos_lower", "dos_upper")  # the pyfunc columns (e2e: the loaded model's)
    assert pd.read_csv(root / "metrics/predictions.csv").columns[1:3].tolist() == ["dos_true", "dos_pred"]


def test_mlflow_ui_opens_on_model_training_with_descriptions(project):
    root, _ = project
    c = client(root)
    experiment = c.get_experiment_by_name("metallo")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # not the GenAI overview
    assert experiment.tags["mlflow.note.content"]
    newest = runs(root)[0]
    note = newest.data.tags["mlflow.note.content"]
    report = json.loads((root / "metrics/eval.json").read_text())
    assert "model `metallonet`" in note and "Params as committed" in note
    assert f"{report['test']['rmse']:.4g}" in note and f"{report['baseline']['classical']['rmse']:.4g}" in note
    visible = {k for k in newest.data.tags if not k.startswith("mlflow.")}  # what the run page lists
    assert not {k for k in visible if k.endswith(("pid", "host", "pid_start"))}, visible


def test_training_removes_the_previous_test_metrics_until_evaluate_runs(project):
    root, _ = project

    def shown_eval() -> dict:
        shown = json.loads(run(["dvc", "metrics", "show", "--json"], root).stdout)
        return shown[""]["data"]["metrics/eval.json"].get("data", {})

    assert "test" in shown_eval()
    trained = run(["dvc", "repro", "-f", "-s", "train"], root)  # as during `dvc exp run`, before evaluate
    assert "Running stage 'train'" in trained.stdout
    assert not (root / "metrics/eval.json").exists() and not (root / "metrics/figures").exists()
    assert shown_eval() == {}  # no test metric is shown for the model in training
    run(["dvc", "repro"], root)  # evaluate writes them again for this model
    assert json.loads((root / "metrics/eval.json").read_text())["test"]["n"] == 8
    assert run(["git", "status", "--porcelain"], root).stdout == ""


def test_metallo_exps_shows_a_readable_table(project):
    root, _ = project
    table = run([sys.executable, "-m", "metallo.cli", "exps", "--md"], root).stdout.strip().splitlines()
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header[0] == "Experiment"
    assert {"test.rmse", "test.r2", "baseline.classical.rmse", "val.rmse"} <= set(header), header
    assert len(header) <= 8 and not any("/" in cell for cell in header), header


# ------------------------------------------------------------------------------------------------
# goal 4: the model folder as a Hugging Face model
# ------------------------------------------------------------------------------------------------

HF_LOAD = """
import json, sys
import numpy as np
import metallo.models
from transformers import AutoImageProcessor, AutoModel
model = AutoModel.from_pretrained("models/model").eval()
processor = AutoImageProcessor.from_pretrained("models/model")
images = np.load("data/processed/images.npy", mmap_mode="r")
spectra = np.load("data/processed/spectra.npy", mmap_mode="r")
rows = [int(i) for i in sys.argv[1:]]
inputs = processor([np.array(images[i]) for i in rows], spectra=np.stack([spectra[i] for i in rows]))
print(json.dumps({"processor": type(processor).__name__, "model": type(model).__name__,
                  "dos": model(**inputs).predictions.detach().double().tolist()}))
"""


def test_auto_classes_load_the_model_folder_and_predict_as_the_pipeline(project):
    root, _ = project
    split = pd.read_parquet(root / "data/split/split.parquet")
    test = split[split["split"] == "test"].head(3)
    result = subprocess.run(
        [sys.executable, "-c", HF_LOAD, *map(str, test["index"])],
        cwd=root,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["processor"] == "MetalloProcessor" and out["model"] == "MetalloNetModel"
    expected = pd.read_csv(root / "metrics/predictions.csv").set_index("sample_id").loc[test["sample_id"], "dos_pred"]
    assert np.allclose(out["dos"], expected.to_numpy(), rtol=1e-3, atol=1e-3)


def test_model_card_is_written(project):
    from huggingface_hub import ModelCard

    root, _ = project
    card = ModelCard.load(root / "models/model/README.md")
    assert "metallo" in card.data.tags and card.data.library_name == "transformers"
    for section in (
        "## How to use",
        "## Training data",
        "## Parameters",
        "## Metrics",
        "## Intended use",
        "## Limitations",
    ):
        assert section in card.text, section
    summary = json.loads((root / "metrics/train.json").read_text())
    assert f"{summary['val']['rmse']:.4g}" in card.text
    assert card.data.license == "mit" and card.data.pipeline_tag == "tabular-regression"
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results[("validation", "rmse")] == pytest.approx(summary["val"]["rmse"])
    from metallo.hub import add_test_results

    report = json.loads((root / "metrics/eval.json").read_text())
    pushed = add_test_results(root / "models/model", report)
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in pushed.data.eval_results}
    assert results[("test", "rmse")] == pytest.approx(report["test"]["rmse"]) and "model-index" in str(pushed)
    assert "import metallo" in card.text and "synthetic demo set" in card.text


# ------------------------------------------------------------------------------------------------
# goal 1 while training runs, and goal 2's comparison command (on a copy: `dvc exp run` changes params)
# ------------------------------------------------------------------------------------------------


#: Epochs of the watched training: long enough that a `dvc exp show` (seconds on a loaded machine) lands
#: before the last step (3 steps each).
LIVE_EPOCHS = 10


def test_dvclive_updates_dvc_exp_show_while_dvc_exp_run_trains(project, tmp_path):
    root = Path(shutil.copytree(project[0], tmp_path / "project", symlinks=True))
    log = open(tmp_path / "exp.log", "w")
    proc = subprocess.Popen(
        ["dvc", "exp", "run", "-S", f"train.num_train_epochs={LIVE_EPOCHS}"],
        cwd=root,
        env=project_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    live_file = root / "metrics/live/metrics.json"
    seen = None
    try:
        deadline = time.monotonic() + 600
        while seen is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if live_file.is_file() and not (root / "models/model").exists():  # train runs: DVC removed its outs
                shown = json.loads(run(["dvc", "exp", "show", "--json"], root).stdout)
                running = [
                    e
                    for r in shown
                    for e in (r.get("experiments") or [])
                    if (e.get("executor") or {}).get("state") == "running"
                ]
                all_metrics = running and running[0]["revs"][0]["data"]["metrics"]
                metrics = all_metrics and all_metrics.get("metrics/live/metrics.json", {})
                if metrics and "train" in metrics.get("data", {}):
                    seen = metrics["data"]
                    # the previous model's test metrics are gone while this one trains (train removed them)
                    stale = all_metrics.get("metrics/eval.json", {}).get("data", {})
                    assert "test" not in stale, f"the running experiment shows old test metrics: {stale}"
        assert proc.wait(timeout=600) == 0, (tmp_path / "exp.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert seen is not None, "dvc exp show never showed the running experiment's live metrics"
    steps = 3 * LIVE_EPOCHS
    assert seen["step"] < steps  # seen before the last step
    assert json.loads(live_file.read_text())["step"] == steps
    assert len(pd.read_csv(root / "metrics/live/plots/metrics/train/loss.tsv", sep="\t")) == steps

    table = run(COMPARE, root).stdout.strip().splitlines()
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header[0] == "Experiment" and "train.num_train_epochs" in header and "test.rmse" in header
    assert len(header) <= 20 and not any("/" in cell for cell in header)  # no file hashes, no code deps
    assert len(table) == 5  # header, rule, workspace, main, the experiment
