"""The command line stays fast and says things that fit the command (issue 15, goal 6)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.project import REPO, project_env

PARSER_IMPORTS = """
import json, sys, time
started = time.perf_counter()
import metallo.cli
metallo.cli.build_parser()
heavy = ("torch", "transformers", "mlflow", "dvclive", "dvc")
print(json.dumps({"seconds": time.perf_counter() - started, "heavy": sorted(m for m in heavy if m in sys.modules)}))
"""


def python(code: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = project_env(PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_building_the_parser_imports_neither_torch_nor_transformers():
    result = python(PARSER_IMPORTS)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["heavy"] == []
    assert report["seconds"] < 1.0


def test_help_answers_in_under_a_second():
    started = time.perf_counter()
    result = python("from metallo.cli import main; main(['--help'])")
    elapsed = time.perf_counter() - started
    assert result.returncode == 0 and "predict" in result.stdout and "compare" in result.stdout
    assert elapsed < 1.5, f"metallo --help took {elapsed:.2f} s (interpreter start included)"


def test_version():
    import metallo

    result = python("from metallo.cli import main; main(['--version'])")
    assert result.returncode == 0
    assert result.stdout.strip() == f"metallo {metallo.__version__}"


@pytest.mark.parametrize("manifest", ["missing.csv", "."])
def test_missing_predict_manifest_gets_predict_advice(tmp_path, manifest):
    result = python(f"from metallo.cli import main; main(['predict', '--manifest', {manifest!r}])", cwd=tmp_path)
    assert result.returncode == 1
    message = result.stderr
    assert "--manifest" in message and "manifest.csv" in message
    assert "ingest.raw_dir" not in message and "dvc repro" not in message


def test_summary_table_headers_sit_over_their_values():
    """`make repro`'s summary (metrics/eval.json through rich): each header ends where its column's values end."""
    from metallo.project import comparison_table, interval_line, render

    report = {
        "test": {"mae": 0.08364, "rmse": 0.1067, "r2": 0.993, "pearson": 0.997, "n": 120},
        "baseline": {"mean": {"mae": 1.018, "rmse": 1.261, "r2": -0.005, "pearson": None}},
        "interval": {"level": 0.9, "halfwidth": 0.1709, "coverage": 0.87, "calibration_n": 72},
    }
    lines = render(comparison_table(report)).splitlines()
    header, model, mean = lines[1], lines[2], lines[3]
    for label, value in (("RMSE", "0.1067"), ("MAE", "0.08364"), ("Pearson r", "0.997")):
        assert header.index(label) + len(label) == model.index(value) + len(value), (header, model)
    assert mean.rstrip().endswith("—") and lines[0].startswith("Test split (n=120)")
    assert interval_line(report) == (
        "90% prediction interval: ± 0.1709 (split conformal, 72 validation residuals); test coverage 0.87"
    )
