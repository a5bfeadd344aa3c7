"""Working with a tiny project's copies: clone it, edit its params, run its stages, read its errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers.project import project_env, run

#: The stages that write data (no training): byte-identical on every run.
DATA_STAGES = ("synthesize", "ingest", "convert", "split")


def clone(src: Path, dst: Path) -> Path:
    """A full copy of a project (git, DVC cache, outputs, MLflow store)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def edit_params(root: Path, edit) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    edit(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def remove(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def stage(root: Path, name: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m stages.<name>`` in ``root``, as DVC runs it (never raises on failure)."""
    return run([sys.executable, "-m", f"stages.{name}"], root, check=False, **env)


def stages_at_once(*jobs: tuple[Path, str, dict]) -> list[subprocess.CompletedProcess]:
    """Run several ``(root, stage, env)`` stage scripts concurrently (they spend most of their time importing)."""
    procs = []
    for root, name, env in jobs:
        out, err = (
            open(root.parent / f"{root.name}-{name}.out", "w+"),
            open(root.parent / f"{root.name}-{name}.err", "w+"),
        )
        cmd = [sys.executable, "-m", f"stages.{name}"]
        env = {"OMP_NUM_THREADS": "1", **env}  # one thread each: they share the machine's cores
        procs.append((cmd, out, err, subprocess.Popen(cmd, cwd=root, env=project_env(**env), stdout=out, stderr=err)))
    try:
        for _, _, _, proc in procs:
            proc.wait(timeout=900)
    finally:
        for _, _, _, proc in procs:  # after a timeout, none is left running
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = []
    for cmd, out, err, proc in procs:
        with out, err:
            out.seek(0)
            err.seek(0)
            results.append(subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read()))
    return results


def complete_checkpoints(folder: Path) -> dict[int, dict]:
    """step -> trainer state of every checkpoint whose trainer_state.json and fingerprint are complete."""
    found = {}
    for path in folder.glob("checkpoint-*"):
        try:
            json.loads((path / "metallo_fingerprint.json").read_text())
            found[int(path.name.split("-")[1])] = json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
    return found


def error_message(result: subprocess.CompletedProcess) -> str:
    """The user-facing error of a failed stage; fails if it is missing or comes with a traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout[-2000:], result.stderr[-4000:])
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    assert "metallo: error:" in result.stderr, result.stderr[-4000:]
    message = result.stderr.split("metallo: error:", 1)[1].strip()
    assert message and "\n\n" not in message, f"not one paragraph:\n{message}"
    return message


def lock_outs(lock: dict, stage_name: str) -> dict[str, str]:
    return {out["path"]: out["md5"] for out in lock["stages"][stage_name]["outs"]}
