"""Training profiles (``train.profile``): the CPU demo's settings or a GPU's, one param apart.

A profile supplies the values of the ``train:`` and ``model:`` keys that are absent or set to
``auto`` in ``params.yaml``; a key set to anything else wins over the profile. So the CPU demo stays
the default (``train.profile: cpu``) and a GPU run is one command away::

    dvc exp run -S train.profile=gpu
    dvc exp run -S train.profile=gpu -S train.per_device_train_batch_size=512   # an explicit key wins

The profile's name is a DVC param and the profile itself is code (versioned with the git commit),
so a run's record (DVC params, MLflow params and tags) names exactly what it trained with. The
resolved values are what the checkpoint fingerprint and the saved model config hold.
"""

from __future__ import annotations

import copy
from typing import Any

from metallo.errors import MetalloError

#: The value that means "take it from ``train.profile``".
AUTO = "auto"
DEFAULT_PROFILE = "cpu"

#: Profile name -> section -> key -> value. See docs/performance.md ("How to run at full speed").
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    # The CPU demo (2 cores): small batches at 128 px, evaluation and a checkpoint every epoch.
    "cpu": {
        "model": {"image_size": 128},
        "train": {
            "per_device_train_batch_size": 16,
            "per_device_eval_batch_size": 64,
            "eval_strategy": "epoch",
            "save_strategy": "epoch",
            "logging_steps": 5,
            "dataloader_num_workers": 0,
            "compile": False,
        },
    },
    # One GPU at the card's speed: full 300-px resolution, large batches, torch.compile, DataLoader workers
    # with pinned memory, evaluation and model-only checkpoints every tenth of the run (not every epoch).
    "gpu": {
        "model": {"image_size": 300},
        "train": {
            "per_device_train_batch_size": 256,
            "per_device_eval_batch_size": 512,
            "eval_strategy": "steps",
            "eval_steps": 0.1,
            "save_strategy": "steps",
            "save_steps": 0.1,
            "save_only_model": True,
            "logging_steps": 10,
            "dataloader_num_workers": 8,
            "dataloader_pin_memory": True,
            "dataloader_persistent_workers": True,
            "dataloader_prefetch_factor": 4,
            "compile": True,
        },
    },
}


def profile_name(params: dict) -> str:
    """``train.profile`` (default ``cpu``), checked against :data:`PROFILES`."""
    name = (params.get("train") or {}).get("profile", DEFAULT_PROFILE)
    if name in (None, AUTO):
        name = DEFAULT_PROFILE
    if name not in PROFILES:
        raise MetalloError(f"train.profile must be one of {', '.join(PROFILES)}; got {name!r}.")
    return name


def profile_record(params: dict) -> dict[str, Any]:
    """What ``train.profile`` decides for ``params`` (before :func:`apply_profile`): its name and every value it
    fills in (``{"section.key": value}`` for the keys absent or ``auto``), as metrics/train.json records them
    for ``dvc metrics show`` / ``dvc exp show`` (DVC's params show only ``auto``)."""
    name = profile_name(params)
    filled = {
        f"{section}.{key}": value
        for section, values in PROFILES[name].items()
        for key, value in values.items()
        if (params.get(section) or {}).get(key, AUTO) == AUTO
    }
    return {"name": name, **filled}


def apply_profile(params: dict) -> dict:
    """A copy of ``params`` whose absent or ``auto`` ``train:``/``model:`` keys take ``train.profile``'s values.

    Raises :class:`MetalloError` for an unknown profile, or for a key set to ``auto`` that no profile
    supplies.
    """
    name = profile_name(params)
    resolved = copy.deepcopy(params)
    for section, values in PROFILES[name].items():
        target = dict(resolved.get(section) or {})
        for key, value in values.items():
            if target.get(key, AUTO) == AUTO:
                target[key] = value
        left = [key for key, value in target.items() if value == AUTO]
        if left:
            raise MetalloError(
                f"{', '.join(f'{section}.{k}' for k in left)} is auto, but profile {name!r} gives "
                f"no value for it; set it explicitly."
            )
        resolved[section] = target
    if "train" in resolved:
        resolved["train"]["profile"] = name
    return resolved
