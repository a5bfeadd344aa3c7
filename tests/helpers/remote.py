"""A team's remotes for a tiny project: a bare git ``origin`` and a DVC folder remote holding its results."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.helpers.project import run


def bare_repo(path: Path) -> Path:
    """A bare git repository whose HEAD is ``main`` (so that a clone of it checks ``main`` out)."""
    run(["git", "init", "-q", "--bare", "-b", "main", str(path)], path.parent)
    return path


def publish(source: Path, base: Path) -> Path:
    """Copy a repro'd project to ``base/project``, give it a DVC folder remote and a bare git ``origin``,
    commit, ``git push`` and ``dvc push``."""
    root = base / "project"
    shutil.copytree(source, root, symlinks=True)
    bare_repo(base / "origin.git")
    run(["dvc", "remote", "add", "-d", "storage", str(base / "dvc-storage")], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "results and the team's DVC remote"], root)
    run(["git", "remote", "add", "origin", str(base / "origin.git")], root)
    run(["git", "push", "-q", "origin", "main"], root)
    run(["dvc", "push"], root)
    return root


def git_clone(base: Path, name: str) -> Path:
    """A fresh ``git clone`` of ``base/origin.git`` into ``base/name`` (git's files only, no DVC outputs)."""
    run(["git", "clone", "-q", str(base / "origin.git"), name], base)
    return base / name
