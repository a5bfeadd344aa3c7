"""Each stage's code dependencies in ``dvc.yaml`` cover every project module the stage runs.

A stage runs ``python -m stages.<name>``; the modules it runs are those its import runs, transitively
(module-level imports, package ``__init__.py`` files included: tests/helpers/imports.py). Each must be listed
in the stage's ``deps``, itself or through a folder above it, or a change to it would not rerun the stage
and ``dvc repro`` would report stale outputs as current.
"""

from __future__ import annotations

import re

import pytest
import yaml

from tests.helpers.imports import ROOT, module_level_closure, relative_path

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def entry_module(stage: dict) -> str:
    match = re.fullmatch(r"python -m (stages\.\w+)", stage["cmd"])
    assert match, f"stage command {stage['cmd']!r} is not `python -m stages.<name>`"
    return match.group(1)


def dep_paths(stage: dict) -> list[str]:
    paths = [next(iter(dep)) if isinstance(dep, dict) else dep for dep in stage.get("deps", [])]
    return [path.rstrip("/") for path in paths if "${" not in path]


def covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep + "/") for dep in deps)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_list_every_module_the_stage_imports(name):
    stage = STAGES[name]
    deps = dep_paths(stage)
    needed = sorted(relative_path(module) for module in module_level_closure(entry_module(stage)))
    missing = [path for path in needed if not covered(path, deps)]
    assert not missing, f"dvc.yaml stage {name!r} misses code deps: {', '.join(missing)}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_exist(name):
    missing = [dep for dep in dep_paths(STAGES[name]) if dep.startswith(("metallo", "stages"))]
    assert all((ROOT / dep).exists() for dep in missing), [dep for dep in missing if not (ROOT / dep).exists()]
