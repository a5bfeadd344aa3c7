"""The ``metallo`` command line and the Python prediction API, as a user meets them.

Help texts, the stage commands (the same functions as the DVC stage scripts), ``metallo models``
and ``metallo predict`` / ``metallo.predict`` on a tiny model trained by a real ``dvc repro``.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from metallo import cli
from metallo.pipeline import BY_COMMAND, STAGES
from tests.helpers.data import synthesize_raw
from tests.helpers.project import REPO, TINY_PARAMS, project_env, run

#: metallo command -> dvc.yaml stage
STAGE_SCRIPTS = {stage.command: stage.name for stage in STAGES}
COMMANDS = (*STAGE_SCRIPTS, "predict", "bench", "models", "ui")


def predict_command(project: Path, manifest: Path, out: Path, *extra: str) -> list[str]:
    """``metallo predict`` with the project's model on ``manifest``, writing ``out``."""
    model = str(project / "models/model")
    return [
        sys.executable,
        "-m",
        "metallo.cli",
        "predict",
        "--model",
        model,
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        *extra,
    ]


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# help and wiring
# ----------------------------------------------------------------------------------------------


def test_top_level_help_lists_every_command(tmp_path):
    # As a user runs it, from any folder (no params.yaml needed for help).
    result = run([sys.executable, "-m", "metallo.cli", "--help"], tmp_path)
    for command in COMMANDS:
        assert command in result.stdout
    assert "usage: metallo" in result.stdout


def test_no_command_prints_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2
    assert "usage: metallo" in capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(capsys, command):
    text = help_text(capsys, command)
    assert f"usage: metallo {command}" in text
    description = text.split("\n\n")[1]  # usage, then what the command does, then the options
    assert not description.lstrip().startswith(("options:", "-h")), (
        f"`metallo {command} --help` says nothing of what it does"
    )
    if command in STAGE_SCRIPTS:
        assert "Reads params:" in text and "--params" in text


def test_stage_help_names_the_params_sections_dvc_tracks(capsys):
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for command, stage in STAGE_SCRIPTS.items():
        line = next(text for text in help_text(capsys, command).splitlines() if text.startswith("Reads params:"))
        listed = {s.strip().split(".")[0] for s in line.removeprefix("Reads params:").rstrip(".").split(",")}
        tracked = {p.split(".")[0] for p in stages[stage]["params"]}
        assert tracked <= listed, (
            f"`metallo {command} --help` lists {sorted(listed)}, dvc.yaml tracks {sorted(tracked)}"
        )


def test_predict_models_ui_help_describe_their_options(capsys):
    text = help_text(capsys, "predict")
    for option in ("--model", "--manifest", "--out", "--on-error"):
        assert option in text
    assert "--image-size" in help_text(capsys, "models")
    text = help_text(capsys, "ui")
    assert "127.0.0.1" in text and "--port" in text


def test_stage_commands_call_what_the_stage_scripts_call():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for command, stage in STAGE_SCRIPTS.items():
        script = REPO / "stages" / f"{stage}.py"
        assert stages[stage]["cmd"] == f"python -m stages.{stage}"
        tree = ast.parse(script.read_text())
        imported = {
            (node.module, alias.name)
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
            if alias.name.startswith("run_")
        }
        called = {
            node.func.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("run_")
        }
        module, function = BY_COMMAND[command].module, BY_COMMAND[command].function
        assert imported == {(module, function)} and called == {function}, (command, imported, called)


def test_stage_command_outside_a_project_says_where_to_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["split"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "metallo: error: params.yaml not found" in err and "project root" in err


def test_models_prints_a_table_of_both_models(capsys):
    cli.main(["models", "--image-size", "64"])
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "params (M)" in lines[0] and "GFLOPs" in lines[0]
    assert any(line.startswith("metallonet") for line in lines)
    assert any(line.startswith("toynet") for line in lines)
    assert "64x64" in out


# ----------------------------------------------------------------------------------------------
# stage commands and prediction on a tiny trained project
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(shared_project) -> Path:
    return shared_project


@pytest.mark.slow
def test_stage_commands_write_what_dvc_repro_wrote(project, tmp_path, monkeypatch, capsys):
    root = tmp_path / "project"
    shutil.copytree(project, root, symlinks=True)
    outputs = [
        "data/interim/samples.parquet",
        "data/interim/rejected.csv",
        "metrics/ingest.json",
        "data/split/split.parquet",
        "data/split/stats.json",
        "metrics/split.json",
    ]
    assert sorted(str(p.relative_to(project)) for p in (project / "data/split").iterdir()) == outputs[3:5]
    for name in outputs:
        (root / name).unlink()
    monkeypatch.chdir(root)
    cli.main(["ingest"])
    cli.main(["split"])
    n = sum(TINY_PARAMS["synthesize"]["samples_per_slice"].values())
    assert f"{n} rows, {n} accepted, 0 rejected" in capsys.readouterr().out
    for name in outputs:
        assert (root / name).read_bytes() == (project / name).read_bytes(), name
    status = run(["dvc", "status"], root)
    assert "up to date" in status.stdout.lower(), status.stdout


N_NEW = 5
BAD_ROW = 2 + N_NEW  # the manifest line of the bad row: header on line 1, samples on lines 2..6


@pytest.fixture(scope="module")
def new_samples(tmp_path_factory) -> dict[str, Path]:
    """New raw folders at the tiny sizes: labelled, and unlabelled (no dos column) with one bad row."""
    base = tmp_path_factory.mktemp("new-samples")
    labelled = base / "labelled"
    synthesize_raw(labelled, seed=7, samples_per_slice={"1": 3, "2": 2}, image_size=64, spectrum_length=64)
    unlabelled = base / "unlabelled"
    shutil.copytree(labelled, unlabelled)
    manifest = pd.read_csv(unlabelled / "manifest.csv", dtype=str).drop(columns=["dos"])
    bad = {"sample_id": "bad01", "slice_id": "1", "image": "images/missing.png", "spectra": manifest["spectra"][0]}
    pd.concat([manifest, pd.DataFrame([bad])]).to_csv(unlabelled / "manifest.csv", index=False)
    return {"labelled": labelled / "manifest.csv", "unlabelled": unlabelled / "manifest.csv"}


@pytest.fixture(scope="module")
def cli_predictions(project, new_samples, tmp_path_factory):
    """``metallo predict`` on the unlabelled folder, as is (skip bad rows) and with --on-error fail, both at once."""
    out = tmp_path_factory.mktemp("cli-predict")
    procs = {}
    for mode, extra in (("skip", []), ("fail", ["--on-error", "fail"])):
        cmd = predict_command(project, new_samples["unlabelled"], out / f"{mode}.csv", *extra)
        procs[mode] = (
            cmd,
            subprocess.Popen(
                cmd, cwd=project, env=project_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ),
        )
    results = {}
    for mode, (cmd, proc) in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        results[mode] = (subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), out / f"{mode}.csv")
    return results


def assert_interval_brackets_prediction(table: pd.DataFrame) -> None:
    """dos_lower..dos_upper is symmetric about dos_pred, one half-width for every row (NaN when uncalibrated)."""
    below = (table["dos_pred"] - table["dos_lower"]).to_numpy()
    above = (table["dos_upper"] - table["dos_pred"]).to_numpy()
    np.testing.assert_allclose(below, above, atol=1e-4)
    np.testing.assert_allclose(below, np.full_like(below, below[0]), atol=1e-4)
    assert np.isnan(below).all() or (below >= 0).all()


@pytest.mark.slow
def test_predict_writes_one_row_per_valid_sample_and_reports_the_bad_row(cli_predictions):
    result, out = cli_predictions["skip"]
    assert result.returncode == 0, result.stderr[-5000:]
    table = pd.read_csv(out, dtype={"sample_id": str})
    assert list(table.columns) == ["sample_id", "dos_pred", "dos_lower", "dos_upper"]
    assert list(table["sample_id"]) == [f"s{i:04d}" for i in range(N_NEW)]
    assert np.isfinite(table["dos_pred"]).all()
    assert_interval_brackets_prediction(table)

    assert f"{N_NEW} predicted, 1 rejected" in result.stdout
    assert f"row {BAD_ROW} (bad01)" in result.stdout and "missing.png" in result.stdout
    rejected = pd.read_csv(out.with_suffix(".rejected.csv"), dtype={"sample_id": str})
    assert list(rejected["row"]) == [BAD_ROW] and list(rejected["sample_id"]) == ["bad01"]
    assert "not found" in rejected["reason"][0]


@pytest.mark.slow
def test_predict_on_error_fail_stops_and_lists_the_bad_row(cli_predictions):
    result, out = cli_predictions["fail"]
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "metallo: error:" in result.stderr and f"row {BAD_ROW} (bad01)" in result.stderr
    assert not out.exists() and not out.with_suffix(".rejected.csv").exists()


@pytest.mark.slow
def test_predict_fails_when_every_row_is_rejected(project, tmp_path):
    raw = tmp_path / "all-bad"
    raw.mkdir()
    (raw / "manifest.csv").write_text("sample_id,slice_id,image,spectra\nx1,1,images/nope.png,spectra/nope.npy\n")
    result = subprocess.run(
        predict_command(project, raw / "manifest.csv", tmp_path / "pred.csv"),
        cwd=project,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "0 predicted, 1 rejected" in result.stdout and "every row was rejected" in result.stderr
    assert (tmp_path / "pred.rejected.csv").is_file()


@pytest.mark.slow
def test_python_api_in_three_lines_matches_the_cli(project, new_samples, cli_predictions):
    from metallo import predict

    result = predict(project / "models/model", new_samples["unlabelled"])
    predictions = result.predictions
    _, out = cli_predictions["skip"]
    from_cli = pd.read_csv(out, dtype={"sample_id": str})
    assert list(predictions["sample_id"]) == list(from_cli["sample_id"])
    np.testing.assert_allclose(predictions["dos_pred"].to_numpy(), from_cli["dos_pred"].to_numpy(), atol=1e-5)
    assert result.metrics is None and "dos" not in predictions
    assert list(result.rejected["sample_id"]) == ["bad01"]


@pytest.mark.slow
def test_predict_with_labels_reports_metrics(project, new_samples):
    from metallo import predict

    result = predict(project / "models/model", new_samples["labelled"])
    manifest = pd.read_csv(new_samples["labelled"], dtype={"sample_id": str})
    assert list(result.predictions.columns) == ["sample_id", "dos_pred", "dos_lower", "dos_upper", "dos_true"]
    assert_interval_brackets_prediction(result.predictions)
    np.testing.assert_allclose(result.predictions["dos_true"].to_numpy(), manifest["dos"].to_numpy())
    assert {"r2", "rmse", "mae", "pearson"} <= set(result.metrics)
    assert np.isfinite(result.metrics["rmse"])
    assert "R²" in result.summary() and len(result.rejected) == 0


@pytest.mark.slow
def test_predict_on_the_test_rows_matches_evaluate(project):
    from metallo import predict

    result = predict(project / "models/model", project / "data/synthetic/manifest.csv")
    evaluated = pd.read_csv(project / "metrics/predictions.csv", dtype={"sample_id": str})
    both = evaluated.merge(result.predictions, on="sample_id", how="left")
    assert len(both) == len(evaluated) == TINY_PARAMS["synthesize"]["samples_per_slice"]["2"]
    assert both["dos_pred_y"].notna().all()
    # predictions.csv and metallo predict name the columns alike: dos_pred_x is evaluate's, dos_pred_y predict's
    np.testing.assert_allclose(both["dos_pred_x"].to_numpy(), both["dos_pred_y"].to_numpy(), atol=1e-5)
    np.testing.assert_allclose(both["dos_true_x"].to_numpy(), both["dos_true_y"].to_numpy(), atol=1e-5)
