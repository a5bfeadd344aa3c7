"""Reading ``params.yaml``: one section per stage, unknown keys refused with a suggestion."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from metallo.errors import MetalloError, did_you_mean

PARAMS_FILE = "params.yaml"


def load_params(path: str | os.PathLike = PARAMS_FILE) -> dict[str, Any]:
    """Load the whole params file as a dict of sections."""
    path = Path(path)
    if not path.is_file():
        raise MetalloError(
            f"{path} not found. Run Metallo from the project root (the folder holding dvc.yaml), or pass --params PATH."
        )
    with open(path, encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    if not isinstance(params, dict):
        raise MetalloError(f"{path} must hold a mapping of sections (data:, ingest:, ...).")
    return params


def section(params: Mapping[str, Any], name: str, allowed: Iterable[str] | None = None) -> dict[str, Any]:
    """Return ``params[name]`` after checking that every key in it is one of ``allowed``."""
    if name not in params:
        raise MetalloError(f"params.yaml has no '{name}:' section; add it (see the project's params.yaml).")
    values = dict(params[name] or {})
    if allowed is not None:
        check_keys(name, values, allowed)
    return values


def check_keys(where: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """Refuse keys that are not in ``allowed``, naming the closest valid ones."""
    allowed = list(allowed)
    unknown = [key for key in given if key not in allowed]
    if unknown:
        lines = [f"  {where}.{key}:{did_you_mean(key, allowed)}" for key in unknown]
        raise MetalloError(
            f"unknown parameter(s) in '{where}':\n"
            + "\n".join(lines)
            + f"\nValid keys: {', '.join(sorted(allowed))}. Fix params.yaml or the -S option."
        )


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested sections to dotted keys: ``{'model': {'hidden_dim': 8}}`` -> ``{'model.hidden_dim': 8}``."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
