"""The learned path trained without the hand-made branch: the candidate held-out validation weighs against the
default MetalloNet (hand-made branch + learned path).

The default trains the learned path on what the closed-form branch leaves over. Where the branch's statistics are
not the mechanism, that is a handicap: on the training samples the branch explains more than it does on new ones
(on the clustering profile train R² 0.53, validation 0.30), so the learned path is fitted to a residual that does
not carry over. When the branch's closed-form start explains less than ``train.try_without_branch_below`` of the
validation variance (R²), the train stage therefore also trains the learned path without the branch, exactly as a
``model.classical_branch: false`` run does -- the same seed, initial weights, contrastive pretraining, arguments
and data, so the candidate *is* the learned-path-alone model -- and keeps whichever validates better
(:func:`metallo.training.selection.keep_better` has already chosen between the start and the trained default).
A first version started the candidate from the default's pretrained encoder to save the pretraining (about 80 s
on the 340-sample sets on two CPU cores); on the elongation profile that candidate tested 0.80, 0.80, 0.78 where
the learned path alone tests 0.834, 0.838, 0.833 (validation RMSE 0.097 against 0.083, seed 1).

Where the branch explains most of the held-out variance it is the prior that carries over to a new specimen, and
validation by held-out samples of the one training specimen cannot tell: on the ``local`` profile (branch start
R² 0.89) the candidate validated better and tested worse (0.910 against 0.940). Hence a threshold: on the
profiles whose branch is the mechanism the start explains 0.84 … 0.99 (every seed run), on the five mechanism
profiles −0.04 … 0.52. The default, 0.7, lies between; at the first default, 0.5, the dispersion profile's seed 1
(start 0.52) trained once and tested 0.42 where its learned path alone tests 0.84.

The candidate's checkpoints go to ``checkpoints/without_branch/`` (same fingerprint, so ``train.resume`` resumes
it). Its curve is not logged (one curve per run in dvclive and MLflow: the default's); its result is, in
``metrics/train.json`` (``val.without_branch_rmse``, ``kept``).
"""

from __future__ import annotations

import copy
from pathlib import Path

from transformers import set_seed

from metallo.errors import MetalloError
from metallo.training import checkpoints, distributed
from metallo.training.selection import Start
from metallo.training.trainer import build_trainer, train_best_model

#: What ``metrics/train.json`` says was kept when the candidate wins.
KEPT_WITHOUT_BRANCH = "trained without the branch"
#: The candidate's checkpoints: a subfolder of the train stage's.
CANDIDATE_DIR = "without_branch"


def wanted(model, start: Start | None, below: float) -> bool:
    """Whether to train the candidate: a MetalloNet with a classical branch whose closed-form start explains less
    than ``below`` of the validation variance."""
    if start is None or not getattr(model.config, "classical_branch", False) or below <= 0:
        return False
    return float(start.metrics["r2"]) < below


def branch_free_model(model, seed: int = 0):
    """The same MetalloNet without the classical branch, on ``model``'s device, initialised as a
    ``model.classical_branch: false`` run initialises it (``seed`` set just before, as the train stage does)."""
    config = copy.deepcopy(model.config)
    config.classical_branch = False
    set_seed(seed)
    return type(model)(config).to(next(model.parameters()).device)


def train_candidate(model, processor, datasets, args, options, fingerprint, augmentation):
    """Train the branch-free candidate of ``model`` (see the module docstring); returns the trainer (its ``model``
    is the candidate's best) and its best validation metrics (``eval_`` prefix removed), or ``None`` when the
    candidate diverged (the default is kept; the message says so)."""
    candidate = branch_free_model(model, args.seed)
    args = copy.copy(args)
    args.output_dir = str(Path(args.output_dir) / CANDIDATE_DIR)
    resume = distributed.prepare_checkpoints(Path(args.output_dir), fingerprint, resume=options.resume, args=args)
    trainer = build_trainer(
        candidate,
        processor,
        datasets,
        args,
        options,
        [checkpoints.FingerprintCallback(fingerprint)],
        augmentation,
    )
    try:
        best = train_best_model(trainer, resume, [], Path(args.output_dir), options.cell_pretrain_epochs)
    except MetalloError as err:  # a diverged candidate is not a failed stage: the default stands
        print(f"train: the candidate without the branch is not kept: {err}")
        return None
    return trainer, {name.removeprefix("eval_"): value for name, value in best.items()}


def keep_better(kept_metrics: dict, record: dict, candidate_metrics: dict, metric: str, greater_is_better: bool):
    """Whether the candidate validates better than what the default kept; the record says what was kept and adds
    ``without_branch_<metric>``."""
    ours, theirs = float(kept_metrics[metric]), float(candidate_metrics[metric])
    wins = theirs > ours if greater_is_better else theirs < ours
    record = {**record, f"without_branch_{metric}": theirs}
    if wins:
        record["kept"] = KEPT_WITHOUT_BRANCH
    return wins, record


__all__ = [
    "KEPT_WITHOUT_BRANCH",
    "branch_free_model",
    "keep_better",
    "train_candidate",
    "wanted",
]
