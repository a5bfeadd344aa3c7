"""Self-supervised pretraining of MetalloNet's cell image encoder, before the label is fitted.

The label of a sample is (for a local mechanism) an average over its measurement cells, so it tells the cell encoder
little about any one cell; fitted from the label alone, the network learns what its first random filters already
respond to and memorises the training labels otherwise. The first phase of the train stage therefore trains the
encoder on its own contrastive loss (:class:`~metallo.models.cell_path.CellContrast`: recognise each cell of a batch
in an altered view of it), with the same ``Trainer``, data, augmentation and normalisation as the supervised phase,
for ``train.cell_pretrain_epochs`` epochs, no evaluation and no checkpoints. The supervised phase then starts from
the pretrained encoder (and keeps the contrastive term in its loss, weighted by ``model.cell_contrast_weight``).
"""

from __future__ import annotations

import copy
import time

from transformers.trainer_utils import IntervalStrategy, SaveStrategy, SchedulerType

from metallo.training.progress import replace_trainer_output


def pretrain_cell_encoder(trainer, epochs: int) -> None:
    """Train ``trainer.model``'s cell encoder for ``epochs`` epochs on its self-supervised loss (nothing if 0, or
    if the model has no such loss). ``trainer`` is the supervised phase's, still untrained: its arguments, data,
    collator and input preparation are reused; its callbacks (tracking, live metrics, early stopping) are not."""
    model = trainer.model
    if epochs <= 0 or not getattr(model, "pretrains_cells", False):
        return
    args = copy.copy(trainer.args)
    args.num_train_epochs, args.max_steps = epochs, -1
    args.eval_strategy, args.save_strategy = IntervalStrategy.NO, SaveStrategy.NO
    args.load_best_model_at_end, args.report_to = False, []
    args.lr_scheduler_type, args.warmup_steps = SchedulerType.CONSTANT_WITH_WARMUP, 0.05  # the label phase decays
    phase = type(trainer)(
        model=model,
        args=args,
        train_dataset=trainer.train_dataset,
        data_collator=trainer.data_collator,
        processor=trainer.processor,
        grid=trainer.grid,
        augmentation=trainer.augmentation,
    )
    replace_trainer_output(phase, enabled=not args.disable_tqdm)
    print(f"train: pretraining the cell encoder on its self-supervised loss for {epochs} epochs (no labels)")
    started = time.monotonic()
    with model.cell_pretraining():
        result = phase.train()
    print(
        f"train: cell encoder pretrained in {time.monotonic() - started:.0f} s (contrastive loss "
        f"{result.training_loss:.3f}); fitting the label"
    )
