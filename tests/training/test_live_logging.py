"""dvclive series and the train stage's console output (issue 15, goals 1 and 6), without a pipeline."""

from __future__ import annotations

import json
from types import SimpleNamespace


def test_series_names_are_the_ones_users_see():
    from metallo.training.live import series

    assert series({"loss": 0.5, "grad_norm": 1.0, "learning_rate": 1e-3, "epoch": 0.5}) == {
        "train/loss": 0.5,
        "train/learning_rate": 1e-3,
        "epoch": 0.5,
    }
    assert series({"eval_rmse": 0.4, "eval_r2": 0.8, "eval_runtime": 0.1, "epoch": 1.0}) == {
        "val_curve/rmse": 0.4,
        "val_curve/r2": 0.8,
    }
    assert series({"train_runtime": 9.0, "train_loss": 0.1, "epoch": 2.0}) == {}  # runtimes go to MLflow only


def test_live_callback_replays_a_resumed_history_once(tmp_path, monkeypatch):
    from metallo.training.live import LiveCallback, finish, open_live

    monkeypatch.chdir(tmp_path)
    live = open_live(tmp_path / "metrics")
    callback = LiveCallback(live)
    state = SimpleNamespace(
        is_world_process_zero=True,
        global_step=2,
        log_history=[
            {"loss": 1.0, "epoch": 0.5, "step": 1},
            {"loss": 0.8, "epoch": 1.0, "step": 2},
            {"eval_rmse": 0.5, "epoch": 1.0, "step": 2},
        ],
    )
    callback.on_train_begin(None, state, None)
    state.global_step = 3
    callback.on_log(None, state, None, logs={"loss": 0.6, "epoch": 1.5})
    finish(live)
    folder = tmp_path / "metrics" / "live"
    assert (folder / "plots/metrics/train/loss.tsv").read_text().split() == [
        "step",
        "loss",
        "1",
        "1.0",
        "2",
        "0.8",
        "3",
        "0.6",
    ]
    assert (folder / "plots/metrics/val_curve/rmse.tsv").read_text().split() == ["step", "rmse", "2", "0.5"]
    summary = json.loads((folder / "metrics.json").read_text())
    assert summary == {"epoch": 1.5, "step": 3}  # progress only: the kept model's metrics are in train.json


def test_progress_prints_one_line_per_evaluation_with_epoch_step_and_eta(capsys):
    from metallo.training.progress import TrainingProgress

    progress = TrainingProgress(bar=False)
    args = SimpleNamespace(num_train_epochs=3, metric_for_best_model="rmse")
    state = SimpleNamespace(
        is_world_process_zero=True, global_step=0, max_steps=30, epoch=0.0, num_train_epochs=3, best_metric=None
    )
    progress.on_train_begin(args, state, None)
    for step in range(1, 11):
        state.global_step, state.epoch = step, step / 10
        progress.on_step_end(args, state, None)
        progress.on_log(args, state, None, logs={"loss": 0.5, "learning_rate": 1e-3, "epoch": state.epoch})
    progress.on_log(args, state, None, logs={"eval_rmse": 0.25, "eval_r2": 0.9, "epoch": 1.0})
    progress.on_train_end(args, state, None)
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line]
    assert len(lines) == 1
    assert lines[0].startswith("train: epoch 1/3  step 10/30  val RMSE 0.25  R² 0.900") and "ETA" in lines[0]
    assert "{" not in out.out + out.err  # no raw log dicts


def test_known_library_messages_are_dropped(caplog):
    import logging

    from metallo.tracking.console import quiet_libraries

    quiet_libraries()
    quiet_libraries()  # idempotent: one filter
    logger = logging.getLogger("transformers.trainer_utils")
    with caplog.at_level(logging.WARNING):
        logger.warning("mtime may not be reliable on this filesystem, falling back to numerical ordering")
        logger.warning("a warning worth reading")
    assert "mtime" not in caplog.text and "a warning worth reading" in caplog.text
    assert len(logger.filters) == 1


def test_trainer_keys_get_one_name_each():
    from metallo.metric_names import flat, trainer_metrics

    logs = {"loss": 0.5, "eval_rmse": 0.4, "train_loss": 0.45, "train_runtime": 9.0, "total_flos": 0, "epoch": 1.0}
    assert trainer_metrics(logs) == {
        "train/loss": 0.5,  # the step's loss: the dvclive curve's
        "val_curve/rmse": 0.4,  # the curve; val/rmse is the kept model's (metrics/train.json)
        "train/mean_loss": 0.45,  # the Trainer's run average: its own name
        "train/runtime": 9.0,
        "epoch": 1.0,
    }  # total_flos (0: FLOPs are not counted) is not logged
    report = {"test": {"rmse": 0.1, "n": 8}, "baseline": {"mean": {"pearson": None, "rmse": 1.0}}}
    assert flat(report) == {"test/rmse": 0.1, "test/n": 8.0, "baseline/mean/rmse": 1.0}
