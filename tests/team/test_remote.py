"""DVC remotes for real: the pipeline's data, models and figures pushed to a folder remote, a fresh clone
that pulls them and has nothing to rebuild, and an experiment shared through a second git remote.

Real git (bare repositories as the remotes), the real DVC CLI, a local folder as the DVC remote
(the same commands work with s3://, gs://, ssh:// remotes); nothing is mocked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.data import tree_digests
from tests.helpers.project import run
from tests.helpers.remote import bare_repo, git_clone, publish

pytestmark = pytest.mark.slow

#: The DVC-cached outputs that travel through the remote (the cache: false metrics travel with git).
CACHED_OUTPUTS = ("data/synthetic", "data/processed", "data/split", "models/model", "metrics/figures")


def digests(root: Path) -> dict[str, dict[str, str]]:
    return {name: tree_digests(root / name) for name in CACHED_OUTPUTS}


@pytest.fixture(scope="module")
def published(shared_project, tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("remote")
    return base, publish(shared_project, base)


def test_push_then_pull_in_a_fresh_clone_leaves_nothing_to_rebuild(published):
    base, root = published
    assert list((base / "dvc-storage").rglob("*")), "dvc push stored nothing"
    fresh = git_clone(base, "fresh")
    assert not (fresh / "models/model").exists()  # only git's files so far
    run(["dvc", "pull"], fresh)
    assert digests(fresh) == digests(root)
    assert "Data and pipelines are up to date" in run(["dvc", "status"], fresh).stdout
    again = run(["dvc", "repro"], fresh)
    assert "Running stage" not in again.stdout, again.stdout
    assert "Data and pipelines are up to date" in run(["dvc", "status"], fresh).stdout


def test_experiment_pushed_to_a_second_git_remote_is_pulled_in_a_clone(published):
    base, root = published
    bare_repo(base / "team.git")
    run(["git", "remote", "add", "team", str(base / "team.git")], root)
    run(["dvc", "exp", "run", "-S", "model.hidden_dim=20", "-n", "shared-exp"], root)
    pushed = run(["dvc", "exp", "push", "team", "shared-exp"], root)
    assert "shared-exp" in pushed.stdout + pushed.stderr

    mate = git_clone(base, "teammate")
    run(["git", "remote", "add", "team", str(base / "team.git")], mate)
    assert "shared-exp" in run(["dvc", "exp", "list", "team"], mate).stdout
    run(["dvc", "exp", "pull", "team", "shared-exp"], mate)
    shown = json.dumps(json.loads(run(["dvc", "exp", "show", "--json"], mate).stdout))
    assert '"name": "shared-exp"' in shown

    run(["dvc", "exp", "apply", "shared-exp"], mate)
    assert "hidden_dim: 20" in (mate / "params.yaml").read_text()
    assert (mate / "metrics/eval.json").read_text() == (root / "metrics/eval.json").read_text()
    assert tree_digests(mate / "models/model") == tree_digests(root / "models/model")
    assert "Data and pipelines are up to date" in run(["dvc", "status"], mate).stdout
