"""What the train stage prints: one tqdm progress bar and one line per evaluation.

:class:`TrainingProgress` replaces the Trainer's own progress/printer callbacks (which print a raw dict at
every logging step): a bar ``epoch 3/30 … step 24/360 [elapsed<ETA]`` on a terminal, and after each
evaluation one line with the epoch, the step, the validation metrics and the ETA, also in CI logs (the bar
switches itself off when the output is not a terminal). The libraries' own noise is silenced by
:mod:`metallo.tracking.console`.
"""

from __future__ import annotations

import math
import time

from tqdm.auto import tqdm
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback


def replace_trainer_output(trainer, enabled: bool) -> TrainingProgress:
    """Swap the Trainer's printer/progress callbacks for one :class:`TrainingProgress`."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    progress = TrainingProgress(bar=enabled)
    trainer.add_callback(progress)
    return progress


class TrainingProgress(TrainerCallback):
    """A tqdm bar over the training steps (epoch x/N, step, ETA) and one line per evaluation.

    Args:
        bar: show the bar (``train.disable_tqdm: true`` turns it off); it is also off when stderr is not
            a terminal. The per-evaluation lines are printed either way.
    """

    def __init__(self, bar: bool = True):
        self.show_bar = bar
        self.bar = None
        self.started = 0.0
        self.first_step = 0

    @staticmethod
    def epochs(args, state) -> int:
        return max(1, math.ceil(state.num_train_epochs or args.num_train_epochs))

    def describe(self, args, state) -> str:
        current = min(int(state.epoch or 0) + 1, self.epochs(args, state))
        return f"train: epoch {current}/{self.epochs(args, state)}"

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step = time.monotonic(), state.global_step
        if state.is_world_process_zero:
            self.bar = tqdm(
                total=state.max_steps,
                initial=state.global_step,
                desc=self.describe(args, state),
                unit="step",
                dynamic_ncols=True,
                disable=None if self.show_bar else True,
                bar_format="{desc} {percentage:3.0f}%|{bar}| step {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)
            self.bar.set_description(self.describe(args, state), refresh=False)

    def eta(self, state) -> str:
        done = state.global_step - self.first_step
        if done <= 0:
            return "?"
        seconds = (time.monotonic() - self.started) / done * (state.max_steps - state.global_step)
        return tqdm.format_interval(seconds)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs:
            return
        if "loss" in logs:
            self.bar.set_postfix_str(f"loss {logs['loss']:.3g}", refresh=False)
        if "eval_rmse" in logs:
            best = state.best_metric if args.metric_for_best_model in ("rmse", "eval_rmse") else None
            text = (
                f"train: epoch {int(round(state.epoch or 0))}/{self.epochs(args, state)}  "
                f"step {state.global_step}/{state.max_steps}  val RMSE {logs['eval_rmse']:.4g}  "
                f"R² {logs.get('eval_r2', float('nan')):.3f}"
            )
            if best is not None:
                text += f"  (best RMSE {min(best, logs['eval_rmse']):.4g})"
            tqdm.write(f"{text}  ETA {self.eta(state)}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
