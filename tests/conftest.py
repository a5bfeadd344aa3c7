"""Shared fixtures: a tiny, real Metallo project (git + DVC) in a temporary folder (see tests/helpers/project.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from tests.helpers.project import make_project, run


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


def _repro_project(base: Path) -> Path:
    root = make_project(base / "project")
    run(["dvc", "repro"], root)
    return root


@pytest.fixture(scope="session")
def shared_project(tmp_path_factory, worker_id) -> Path:
    """A tiny project after a full ``dvc repro``, built once per test run. Never change it: copy it.

    Under pytest-xdist (``make test`` runs two workers) the first worker to ask builds it in the run's common
    temporary folder while the others wait on a file lock, then every worker reads the same copy.
    """
    if worker_id == "master":  # not distributed
        return _repro_project(tmp_path_factory.mktemp("shared-repro"))
    common = tmp_path_factory.getbasetemp().parent
    base, done = common / "shared-repro", common / "shared-repro.done"
    with FileLock(str(common / "shared-repro.lock")):
        if not done.is_file():
            shutil.rmtree(base, ignore_errors=True)  # what a worker that failed to build it left
            _repro_project(base)
            done.touch()
    return base / "project"
