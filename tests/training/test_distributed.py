"""Multi-process data-parallel training through torchrun + the Trainer's DDP (gloo on CPU)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from tests.helpers.project import make_project, run

pytestmark = pytest.mark.slow


def test_train_stage_under_torchrun_saves_and_logs_once(tmp_path):
    root = make_project(tmp_path / "project", {"train": {"nproc_per_node": 2, "ddp_backend": "gloo"}})
    run(["dvc", "repro", "split"], root)
    result = run(["python", "-m", "stages.train"], root)
    assert "torch.distributed.run" in result.stdout and "--nproc_per_node=2" in result.stdout

    summary = json.loads((root / "metrics/train.json").read_text())
    # Two processes shard each epoch: every process sees half of the training rows per step.
    assert summary["train_samples"] == 19 and summary["steps"] > 0
    assert sorted(p.name for p in (root / "models").iterdir()) == ["model", "run.json"]
    assert (root / "models/model/model.safetensors").is_file()

    # The saved model is the best checkpoint rank 0 selected, and its validation metric is the one evaluated.
    last = max((root / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((last / "trainer_state.json").read_text())
    best = root / "checkpoints" / Path(state["best_model_checkpoint"]).name
    saved, selected = load_file(root / "models/model/model.safetensors"), load_file(best / "model.safetensors")
    assert saved.keys() == selected.keys() and all(torch.equal(saved[k], selected[k]) for k in saved)
    assert summary["val"]["rmse"] == pytest.approx(state["best_metric"], rel=1e-5)

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("metallo").experiment_id])
    assert len(runs) == 1
    assert runs[0].data.params["train.nproc_per_node"] == "2"
    assert json.loads((root / "models/run.json").read_text())["run_id"] == runs[0].info.run_id


def test_closed_form_model_under_torchrun_is_fitted_and_saved_by_rank_0_only(tmp_path):
    root = make_project(
        tmp_path / "project", {"model": {"name": "classical"}, "train": {"nproc_per_node": 2, "ddp_backend": "gloo"}}
    )
    run(["dvc", "repro", "split"], root)
    result = run(["python", "-m", "stages.train"], root)
    assert "--nproc_per_node=2" in result.stdout and result.stdout.count("train: kept model's validation RMSE") == 1

    summary = json.loads((root / "metrics/train.json").read_text())
    assert summary["model"] == "classical" and summary["steps"] == 1 and summary["ridge_alpha"] > 0
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("metallo").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]


def test_branch_free_candidate_under_torchrun_is_trained_on_every_rank_and_recorded_once(tmp_path):
    train = {"nproc_per_node": 2, "ddp_backend": "gloo", "try_without_branch_below": 0.99}
    root = make_project(tmp_path / "project", {"model": {"classical_branch": True}, "train": train})
    run(["dvc", "repro", "split"], root)
    result = run(["python", "-m", "stages.train"], root)
    # Both ranks train the candidate (one DDP job), rank 0 alone reports what was kept.
    assert result.stdout.count("training the learned path without it too") == 2
    assert result.stdout.count("train: kept the ") == 1

    summary = json.loads((root / "metrics/train.json").read_text())
    assert summary["kept"] in {"closed-form start", "trained", "trained without the branch"}
    assert {"start_rmse", "trained_rmse", "without_branch_rmse"} <= summary["val"].keys()
    assert (root / "checkpoints/without_branch").is_dir() and (root / "models/model/model.safetensors").is_file()
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("metallo").experiment_id])
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert runs[0].data.tags["metallo.kept"] == summary["kept"]
    assert runs[0].data.metrics["val/without_branch_rmse"] == pytest.approx(summary["val"]["without_branch_rmse"])


def _draw_on_rank(rank: int, world: int, port: int, out: dict) -> None:
    """One gloo rank: the train stage's augmentation generator and one augmentation of a shared batch."""
    from metallo.augmentation import Augmentation, augment_batch
    from metallo.training.distributed import augmentation_generator

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    batch = {"pixel_values": torch.zeros(8, 16, 16, 3, dtype=torch.uint8), "spectra": torch.ones(8, 24, 4)}
    gains = augment_batch(batch, (6, 4), Augmentation(), augmentation_generator("cpu", 0, dist.get_rank()))
    gathered = [torch.empty(8, 3) for _ in range(world)]
    dist.all_gather(gathered, gains["image_gain"])
    if rank == 0:
        out["gains"] = torch.stack(gathered)
    dist.destroy_process_group()


def test_ranks_draw_different_augmentations(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_draw_on_rank, args=(2, port, out), nprocs=2, join=True)
        gains = out["gains"]
    assert gains.shape == (2, 8, 3) and not torch.allclose(gains[0], gains[1])
