"""A tiny, real Metallo project (git + DVC) in a temporary folder, and running commands in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
#: What a project checkout needs to run the pipeline.
PROJECT_FILES = ("dvc.yaml", "params.yaml", ".dvcignore", "stages", "metallo")

#: Small enough for seconds per stage on 2 CPU cores, large enough for every split to be non-empty.
TINY_PARAMS = {
    "data": {"n_spectra": 24, "spectrum_length": 64, "grid": [6, 4]},
    "synthesize": {"seed": 0, "samples_per_slice": {"1": 24, "2": 8}, "image_size": 64},
    "convert": {"resize": 72, "crop": 64, "workers": 2},
    "split": {"val_fraction": 0.2},
    # the learned path alone: every change of params reaches the model (with the closed-form branch on, a tiny
    # training often keeps the closed-form start; its choice is tested in tests/training/test_selection.py)
    "model": {"name": "metallonet", "image_size": 64, "hidden_dim": 16, "classical_branch": False},
    "train": {
        "num_train_epochs": 2,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 16,
        "logging_steps": 1,
        "early_stopping_patience": 0,
        "cell_pretrain_epochs": 1,  # the self-supervised phase runs, briefly
        "save_total_limit": 1,
    },
    "evaluate": {"attention_examples": 2},
}


def merge(base: dict, update: dict) -> dict:
    """``base`` with ``update`` overlaid, nested sections merged key by key."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def project_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: this interpreter's bin first, no inherited MLflow/DVC settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = ""
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd`` with :func:`project_env`; with ``check``, fail the test on a non-zero status."""
    result = subprocess.run(cmd, cwd=cwd, env=project_env(**env), capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def make_project(
    root: Path, params: dict | None = None, *, tiny: bool = True, extra_files: tuple[str, ...] = ()
) -> Path:
    """Copy the pipeline into ``root`` and commit it in a fresh git + DVC repo.

    ``tiny`` overlays :data:`TINY_PARAMS` on the project's params (``False`` keeps the demo size);
    ``params`` is overlaid last; ``extra_files`` are more repository files to copy (e.g. ``dvc.lock``).
    """
    root.mkdir(parents=True, exist_ok=True)
    for name in (*PROJECT_FILES, ".gitignore", *extra_files):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    full = yaml.safe_load((REPO / "params.yaml").read_text())
    merged = merge(merge(full, TINY_PARAMS) if tiny else full, params or {})
    (root / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], root)
    run(["git", "config", "user.email", "test@example.com"], root)
    run(["git", "config", "user.name", "Metallo tests"], root)
    run(["dvc", "init", "-q"], root)
    run(["dvc", "config", "core.analytics", "false"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "tiny project"], root)
    return root
