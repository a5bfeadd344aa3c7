"""CI reruns on versioned data: `make ci` for real on a tiny pipeline, and the example GitHub workflow.

The team's side is real (a bare git ``origin``, a DVC folder remote holding main's outputs); the
pull request is a branch that changes one param; CI is a fresh clone of that branch running
``make ci`` (metallo/ci.py): dvc pull, dvc repro, params and metrics against main as Markdown.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.project import REPO, project_env, run
from tests.helpers.remote import git_clone, publish

BUILD_FILES = ("Makefile", "requirements.txt", "pyproject.toml")


def make_ci(root: Path, stamp: Path, *args: str) -> subprocess.CompletedProcess:
    """``make ci`` in ``root`` with this interpreter's environment (``stamp``: its install is up to date)."""
    return subprocess.run(
        ["make", "ci", f"BIN={Path(sys.executable).parent}", f"STAMP={stamp}", *args],
        cwd=root,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_make_ci_pulls_reruns_only_what_changed_and_reports_against_main(shared_project, tmp_path):
    root = publish(shared_project, tmp_path)
    for name in BUILD_FILES:
        shutil.copy2(REPO / name, root / name)
    run(["git", "add", *BUILD_FILES], root)
    run(["git", "commit", "-qm", "build files"], root)
    run(["git", "push", "-q", "origin", "main"], root)
    run(["git", "checkout", "-qb", "wider-model"], root)
    params = (root / "params.yaml").read_text()
    assert "hidden_dim: 16" in params
    (root / "params.yaml").write_text(params.replace("hidden_dim: 16", "hidden_dim: 20"))
    run(["git", "commit", "-qam", "wider model"], root)
    run(["git", "push", "-q", "origin", "wider-model"], root)

    checkout = git_clone(tmp_path, "ci")
    run(["git", "checkout", "-q", "wider-model"], checkout)
    stamp = tmp_path / "installed"
    stamp.touch()  # newer than the clone's requirements.txt: make installs nothing
    result = make_ci(checkout, stamp, "CI_BASE=origin/main", "CI_REPORT=ci-report.md")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "dvc pull --allow-missing" in out
    for stage in ("synthesize", "ingest", "convert", "split"):
        assert f"Running stage '{stage}'" not in out, f"{stage} was recomputed instead of pulled"
    assert "Running stage 'train'" in out and "Running stage 'evaluate'" in out

    report = (checkout / "ci-report.md").read_text()
    print(report)
    assert report in out
    assert report.startswith("## Metallo CI: this change against `origin/main`")
    params_part, metrics_part = report.split("### Metrics")
    assert "| params.yaml | model.hidden_dim | 16" in params_part and "| 20" in params_part
    assert "| Path" in metrics_part and "metrics/eval.json" in metrics_part and "rmse" in metrics_part
    assert "Data and pipelines are up to date" in run(["dvc", "status"], checkout).stdout

    missing = subprocess.run(
        [sys.executable, "-m", "metallo.ci", "--base", "no-such-branch"],
        cwd=checkout,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 1
    assert "'no-such-branch' is not in this clone" in missing.stderr and "Traceback" not in missing.stderr


def test_make_ci_target_runs_the_ci_module():
    dry = subprocess.run(
        ["make", "-n", "ci", "CI_BASE=origin/main", "CI_REPORT=r.md"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.returncode == 0, dry.stderr
    assert "-m metallo.ci --base origin/main --report r.md" in dry.stdout


def test_example_workflow_runs_make_ci_on_pull_requests():
    flow = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert "pull_request" in triggers
    steps = flow["jobs"]["repro"]["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0, "the base branch must be in the clone"
    runs = [s.get("run", "") for s in steps]
    assert any(r.startswith("make ci CI_BASE=origin/") and "CI_REPORT=" in r for r in runs)
    assert any("GITHUB_STEP_SUMMARY" in r for r in runs)
    assert "EXAMPLE" in (REPO / ".github/workflows/ci.yml").read_text().splitlines()[0]
