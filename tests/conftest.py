"""Shared fixtures: a tiny, real Metallo project (git + DVC) in a temporary folder (see tests/helpers/project.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.project import make_project, run


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


@pytest.fixture(scope="session")
def shared_project(tmp_path_factory) -> Path:
    """A tiny project after a full ``dvc repro``, built once per session. Never change it: copy it."""
    root = make_project(tmp_path_factory.mktemp("shared-repro") / "project")
    run(["dvc", "repro"], root)
    return root
