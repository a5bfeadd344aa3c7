"""Static checks of the Dockerfile: what it copies exists, and it installs requirements.txt."""

from __future__ import annotations

import re
import shlex

from tests.helpers.project import REPO


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_every_copied_path_exists():
    copies = [args for op, args in dockerfile_instructions() if op == "COPY"]
    assert copies
    for args in copies:
        *sources, _destination = shlex.split(args)
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repository"


def test_install_uses_the_projects_requirements_file():
    runs = " ".join(args for op, args in dockerfile_instructions() if op == "RUN")
    assert re.search(r"pip install [^&]*-r requirements\.txt", runs)
    copied = " ".join(args for op, args in dockerfile_instructions() if op == "COPY")
    assert "requirements.txt" in copied


def test_default_command_runs_the_pipeline():
    cmd = [args for op, args in dockerfile_instructions() if op == "CMD"]
    assert cmd and "dvc" in cmd[-1] and "repro" in cmd[-1]
