"""What the train stage does differently under DDP (``torchrun``), kept correct beyond one node.

* With ``train.nproc_per_node`` > 1 the stage re-runs itself under ``torchrun --standalone``
  (:func:`relaunched_under_torchrun`); the Trainer then runs DDP in each process.
* Each rank augments with its own device generator, seeded ``train.seed + rank``
  (:func:`augmentation_generator`): the ranks draw different flips and gains, reproducibly.
* Old checkpoints are deleted by the process that writes checkpoints on this disk
  (``TrainingArguments.should_save``: rank 0, or each node's local rank 0 with
  ``train.save_on_each_node: true`` for per-node disks), between two barriers
  (:func:`prepare_checkpoints`): no rank reads the folder while it is deleted.
* After training, every rank takes rank 0's weights (:func:`broadcast_from_main`), so the final
  evaluation and the saved model are the best model rank 0 loaded even when another node could not
  read rank 0's checkpoint (per-node disks without ``save_on_each_node``).
* At the end every rank waits for the others and the process group is destroyed (:func:`shut_down`):
  no rank leaves while another still works.

Without a process group every function is a no-op apart from its single-process work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from metallo.errors import MetalloError
from metallo.training import checkpoints

#: The module torchrun runs in each process.
STAGE_MODULE = "metallo.training.train"


def under_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (it sets ``LOCAL_RANK``)."""
    return "LOCAL_RANK" in os.environ


def launch_torchrun(nproc: int) -> None:
    """Run the train stage under ``torchrun`` with ``nproc`` processes on this machine, and wait for it."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += ["-m", STAGE_MODULE]
    print("train: launching", " ".join(cmd[1:]), flush=True)
    result = subprocess.run(cmd, check=False)
    if result.returncode:
        raise MetalloError(f"torchrun exited with status {result.returncode}; see the log above.")


def relaunched_under_torchrun(nproc: int) -> bool:
    """With ``nproc`` > 1 and not yet under torchrun, run the stage there (:func:`launch_torchrun`) and say so."""
    if nproc <= 1 or under_torchrun():
        return False
    launch_torchrun(nproc)
    return True


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group is initialised (DDP under torchrun)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_distributed():
        torch.distributed.barrier()


def shut_down() -> None:
    """Wait for every rank, then destroy the process group (no-op without one).

    Called once the stage's work is done on every rank: a rank that leaves Python while another still works
    (rank 0 saves the model and logs to MLflow alone) can abort in the process group's threads at exit
    ("terminate called without an active exception", SIGABRT, seen in CI on the two-rank CPU test); torchrun
    then fails the stage although training succeeded.
    """
    if is_distributed():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def augmentation_generator(device: torch.device | str, seed: int, rank: int) -> torch.Generator:
    """A generator on ``device`` seeded ``seed + rank``: each rank's own augmentation stream, drawn on the device."""
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed) + int(rank))


def prepare_checkpoints(folder: Path, fingerprint: dict[str, Any], *, resume: bool, args) -> str | None:
    """:func:`metallo.training.checkpoints.prepare` on every rank, with barriers around the deletion.

    Every rank first finds the checkpoint to resume from (read-only); only the process that saves on
    this disk (``args.should_save``) may then delete an old run's checkpoints, and no rank goes on
    before that is done.
    """
    checkpoint = checkpoints.prepare(folder, fingerprint, resume=resume, is_main=False)
    barrier()
    if checkpoint is None and args.should_save:
        checkpoints.prepare(folder, fingerprint, resume=False, is_main=True)
    barrier()
    return checkpoint


def broadcast_from_main(model: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (no-op without a process group)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in model.state_dict().values():
            torch.distributed.broadcast(tensor, src=0)
