"""Training checkpoints: which one ``train.resume: true`` continues from, and whether it may.

Every checkpoint the train stage saves carries ``metallo_fingerprint.json``: a digest of the
params that shape training (``model:``, ``data:``, ``convert.resize``/``crop`` and ``train:``
except :data:`RESULT_NEUTRAL` options such as ``resume`` itself) and of the training data itself: the
sha256 of every file the train stage reads its data from (:func:`data_digests`: ``data/processed``, with
the labels in ``samples.parquet`` and the arrays, and ``data/split``, with the split and the statistics).
Labels corrected in the raw data change the processed table even when the split and the statistics come
out byte-identical (two labels swapped), so such a checkpoint is not resumed. It is written atomically by
:class:`FingerprintCallback` right after the Trainer has saved the checkpoint, so a checkpoint
without it (or without a readable ``trainer_state.json``) is incomplete and is passed over.

Policy on a mismatch: **resume refuses**. With ``train.resume: true`` and a newest complete
checkpoint whose fingerprint differs from the current params/data, :func:`prepare` raises a
:class:`~metallo.errors.MetalloError` that names the params (or data files) that differ and
says how to start fresh (delete ``checkpoints/`` or set ``train.resume: false``). It never
silently restarts: a run that was asked to continue must not quietly train something else,
and it never "resumes" a different training (0 steps and the old model, or a shape error).
A checkpoint written before fingerprints existed has none and is therefore not resumed from.
With ``train.resume: false`` the old checkpoints are deleted and training starts fresh.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from metallo.errors import MetalloError
from metallo.io import write_json
from metallo.layout import PATHS, Paths
from metallo.params import flatten
from metallo.tracking.lineage import data_digests

FINGERPRINT_FILE = "metallo_fingerprint.json"
STATE_FILE = "trainer_state.json"
#: ``train:`` options that do not change the trained model (logging, bookkeeping, data loading).
RESULT_NEUTRAL = frozenset(
    {
        "resume",
        "report_to",
        "disable_tqdm",
        "logging_steps",
        "logging_strategy",
        "logging_first_step",
        "logging_dir",
        "logging_nan_inf_filter",
        "save_total_limit",
        "dataloader_num_workers",
        "dataloader_pin_memory",
        "dataloader_persistent_workers",
        "dataloader_prefetch_factor",
        "data_on_device",
        "run_name",
        "push_to_hub",
        "hub_model_id",
        "hub_token",
    }
)


def fingerprint(params: dict, paths: Paths = PATHS) -> dict[str, Any]:
    """The params and data digests that decide what training produces, and one digest of them all."""
    train = {k: v for k, v in dict(params.get("train") or {}).items() if k not in RESULT_NEUTRAL}
    convert = dict(params.get("convert") or {})
    shaping = {
        "model": dict(params.get("model") or {}),
        "train": train,
        "data": dict(params.get("data") or {}),
        "preprocess": dict(params.get("preprocess") or {}),
        "convert": {k: convert.get(k) for k in ("resize", "crop", "fit", "bit_depth")},
    }
    flat = {k: v for k, v in flatten(shaping).items()}
    data = data_digests(paths)
    canonical = json.dumps({"params": flat, "data": data}, sort_keys=True, default=str)
    return {
        "digest": hashlib.sha256(canonical.encode()).hexdigest(),
        "params": json.loads(json.dumps(flat, default=str)),
        "data": data,
    }


def read_fingerprint(checkpoint: str | Path) -> dict[str, Any] | None:
    try:
        found = json.loads((Path(checkpoint) / FINGERPRINT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and "digest" in found else None


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint with a readable ``trainer_state.json`` and fingerprint (written last).

    A run killed while saving leaves a newer checkpoint folder without them; resuming from that
    folder would fail, so it is passed over.
    """
    complete = []
    for path in Path(folder).glob("checkpoint-*") if Path(folder).is_dir() else ():
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if not (match and path.is_dir() and (path / STATE_FILE).is_file()):
            continue
        try:
            json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # truncated by the kill
            continue
        if read_fingerprint(path) is None:
            continue
        complete.append((int(match.group(1)), str(path)))
    return max(complete)[1] if complete else None


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable list of what differs between two fingerprints."""
    out = []
    old_params, new_params = old.get("params", {}), new.get("params", {})
    for key in sorted(set(old_params) | set(new_params)):
        if old_params.get(key, "<unset>") != new_params.get(key, "<unset>"):
            out.append(f"{key}: {old_params.get(key, '<unset>')!r} -> {new_params.get(key, '<unset>')!r}")
    old_data, new_data = old.get("data", {}), new.get("data", {})
    for key in sorted(set(old_data) | set(new_data)):
        if old_data.get(key) != new_data.get(key):
            out.append(f"{key} changed")
    return out or ["the fingerprint digest (written by another Metallo version)"]


def prepare(folder: Path, current: dict[str, Any], *, resume: bool, is_main: bool = True) -> str | None:
    """The checkpoint to resume from, or ``None`` after clearing old checkpoints for a fresh start.

    Raises :class:`MetalloError` when ``resume`` is on and the newest complete checkpoint was
    written for other params or data (see the module docstring).
    """
    folder = Path(folder)
    checkpoint = last_complete_checkpoint(folder) if resume else None
    if checkpoint:
        found = read_fingerprint(checkpoint) or {}
        if found.get("digest") != current["digest"]:
            raise MetalloError(
                f"train.resume is true, but {checkpoint} was written for other params or data than now "
                f"({'; '.join(differences(found, current))}). Resuming would continue a different training. "
                f"Delete {folder}/ or set train.resume: false to train from scratch with the current params, "
                "or restore the old params to continue."
            )
        print(f"train: resuming from {checkpoint}")
        return checkpoint
    if is_main and folder.is_dir():
        shutil.rmtree(folder)  # checkpoints of an earlier run must not mix with this one
    return None


class FingerprintCallback(TrainerCallback):
    """Writes :data:`FINGERPRINT_FILE` into each checkpoint right after the Trainer has saved it (on every
    process that saves checkpoints)."""

    def __init__(self, current: dict[str, Any]):
        self.current = current

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:  # rank 0, or each node's local rank 0 with save_on_each_node (per-node disks)
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                write_json(checkpoint / FINGERPRINT_FILE, self.current)
        return control
