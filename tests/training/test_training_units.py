"""Unit tests for the training glue: metrics, params → TrainingArguments, tracking URI, processor."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from metallo.augmentation import flip_batch
from metallo.errors import MetalloError
from metallo.metrics import regression_metrics
from metallo.params import load_params
from metallo.processing import MetalloProcessor
from metallo.tracking import lineage
from metallo.tracking.tracker import Tracker, project_root, tracking_uri
from metallo.training.arguments import METALLO_OPTIONS, MetalloOptions, build_training_arguments
from tests.helpers.project import REPO


def test_metrics_against_hand_computed_values():
    y = [1.0, 2.0, 3.0, 4.0]
    p = [1.5, 2.0, 2.0, 5.0]
    m = regression_metrics(y, p)
    # errors 0.5, 0, -1, 1 -> MAE 2.5/4, MSE 2.25/4; SS_tot = 5
    assert m["mae"] == pytest.approx(0.625)
    assert m["rmse"] == pytest.approx(math.sqrt(0.5625))
    assert m["r2"] == pytest.approx(1 - 2.25 / 5)
    assert m["pearson"] == pytest.approx(np.corrcoef(y, p)[0, 1])


def test_metrics_perfect_and_constant():
    assert regression_metrics([1, 2, 3], [1, 2, 3]) == {"mae": 0.0, "rmse": 0.0, "r2": 1.0, "pearson": 1.0}
    constant = regression_metrics([1, 2, 3], [2, 2, 2])
    assert constant["r2"] == pytest.approx(0.0) and math.isnan(constant["pearson"])
    with pytest.raises(ValueError):
        regression_metrics([1, 2], [1])


def test_training_arguments_from_params(tmp_path):
    args, options = build_training_arguments(
        {
            "num_train_epochs": 3,
            "learning_rate": 0.01,
            "logging_steps": 2,
            "eval_strategy": "epoch",
            "save_strategy": "epoch",
            "load_best_model_at_end": True,
            "metric_for_best_model": "rmse",
            "greater_is_better": False,
            "early_stopping_patience": 2,
            "report_to": ["mlflow"],
            "augment": False,
        },
        tmp_path,
    )
    assert args.num_train_epochs == 3 and args.learning_rate == 0.01 and args.logging_steps == 2
    assert args.report_to == [] or args.report_to == "none" or "mlflow" not in args.report_to
    assert args.use_cpu == (not torch.cuda.is_available())
    assert options.early_stopping_patience == 2 and options.augment is False


def test_unknown_train_key_names_the_closest_valid_ones(tmp_path):
    with pytest.raises(MetalloError) as err:
        build_training_arguments({"learning_rte": 0.1, "early_stoping_patience": 3}, tmp_path)
    message = str(err.value)
    assert "train.learning_rte" in message and "learning_rate" in message
    assert "early_stopping_patience" in message


def test_invalid_training_argument_value_is_a_clear_error(tmp_path):
    with pytest.raises(MetalloError, match="TrainingArguments"):
        build_training_arguments({"eval_strategy": "sometimes", "early_stopping_patience": 0}, tmp_path)


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("per_device_train_batch_size", 0, "train.per_device_train_batch_size must be a positive integer; got 0"),
        ("per_device_eval_batch_size", 2.5, "train.per_device_eval_batch_size must be a positive integer; got 2.5"),
        ("gradient_accumulation_steps", -1, "train.gradient_accumulation_steps must be a positive integer"),
        ("learning_rate", -1, "train.learning_rate must be a positive number; got -1"),
        ("learning_rate", ".nan", "train.learning_rate must be a positive number"),
        ("weight_decay", -0.1, "train.weight_decay must be 0 or a positive number; got -0.1"),
        ("warmup_steps", -5, "train.warmup_steps must be 0 or a positive number"),
    ],
)
def test_out_of_range_training_numbers_name_the_param(tmp_path, key, value, expected):
    with pytest.raises(MetalloError) as err:
        build_training_arguments({"early_stopping_patience": 0, key: value}, tmp_path)
    assert expected in str(err.value) and "params.yaml" in str(err.value)


def test_training_numbers_in_range_are_accepted(tmp_path):
    args, _ = build_training_arguments(
        {"early_stopping_patience": 0, "learning_rate": "1e-3", "weight_decay": 0, "per_device_train_batch_size": 1},
        tmp_path,
    )
    assert float(args.learning_rate) == 1e-3 and args.per_device_train_batch_size == 1


def test_metallo_options_are_documented():
    assert {"early_stopping_patience", "resume", "compile", "nproc_per_node", "augment"} <= set(METALLO_OPTIONS)


def test_params_yaml_states_the_options_defaults():
    """A ``train:`` key left out of params.yaml means what params.yaml says it is (``auto`` keys are the profile's)."""
    stated = load_params(REPO / "params.yaml")["train"]
    defaults = MetalloOptions()
    differ = {
        key: (stated[key], getattr(defaults, key))
        for key in METALLO_OPTIONS
        if key in stated and stated[key] != "auto" and stated[key] != getattr(defaults, key)
    }
    assert not differ, f"params.yaml train: value vs MetalloOptions default: {differ}"


def test_tracking_uri_in_a_dvc_temporary_copy(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project = tmp_path / "project"
    temp_copy = project / ".dvc" / "tmp" / "exps" / "tmpabc123"
    temp_copy.mkdir(parents=True)
    assert project_root(temp_copy) == project.resolve()
    assert tracking_uri(temp_copy) == f"sqlite:///{project.resolve() / 'mlflow.db'}"
    assert tracking_uri(project) == tracking_uri(temp_copy)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(temp_copy) == "http://127.0.0.1:5000"


def test_unreachable_store_warns_and_disables_tracking(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'missing-dir' / 'x' / 'mlflow.db'}")
    (tmp_path / "missing-dir").write_text("a file where a folder should be")
    tracker = Tracker("metallo")
    with pytest.warns(UserWarning, match="MLflow tracking disabled"):
        tracker.start()
    assert tracker.enabled is False
    tracker.log_metrics({"x": 1.0})  # no-op, no error
    tracker.finish()


def _processor(length=8):
    return MetalloProcessor(
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.25, 0.25, 0.25],
        spectra_mean=[1.0] * length,
        spectra_std=[2.0] * length,
        image_size=4,
        resize=10,
        crop=8,
    )


def test_processor_normalises_and_resizes_on_the_batch():
    processor = _processor()
    pixels = torch.full((2, 8, 8, 3), 255, dtype=torch.uint8)
    out = processor({"pixel_values": pixels, "spectra": torch.full((2, 6, 8), 5.0), "labels": torch.zeros(2)})
    assert out["pixel_values"].shape == (2, 3, 4, 4) and out["pixel_values"].dtype == torch.float32
    assert torch.allclose(out["pixel_values"], torch.full((2, 3, 4, 4), 2.0))
    assert torch.allclose(out["spectra"], torch.full((2, 6, 8), 2.0))
    assert out["pixel_values"].is_contiguous(memory_format=torch.channels_last)


def test_processor_round_trip(tmp_path):
    processor = _processor()
    processor.save_pretrained(tmp_path)
    assert MetalloProcessor.from_pretrained(tmp_path) == processor
    with pytest.raises(MetalloError, match="not a model directory"):
        MetalloProcessor.from_pretrained(tmp_path / "elsewhere")


def test_flips_keep_each_spectrum_under_its_grid_cell():
    rows, cols, size = 3, 2, 6
    # Image value at each pixel = index of the grid cell it lies in; spectrum k is constant k.
    cell = torch.arange(rows * cols).view(rows, cols)
    image = cell.repeat_interleave(size // rows, 0).repeat_interleave(size // cols, 1)
    pixels = image.to(torch.uint8)[None, :, :, None].expand(16, size, size, 3).contiguous()
    spectra = torch.arange(rows * cols, dtype=torch.float32)[None, :, None].expand(16, rows * cols, 5).contiguous()
    out = flip_batch({"pixel_values": pixels, "spectra": spectra}, (rows, cols), torch.Generator().manual_seed(0))
    assert not torch.equal(out["pixel_values"], pixels)  # some samples flipped
    for b in range(16):
        img = out["pixel_values"][b, :, :, 0]
        for k in range(rows * cols):
            r, c = divmod(k, cols)
            under_cell = img[r * size // rows, c * size // cols].item()
            assert out["spectra"][b, k, 0].item() == under_cell


def test_in_memory_dataset_matches_the_memory_mapped_one(tmp_path):
    from metallo.data.dataset import InMemoryDataset, MetalloDataset

    rng = np.random.default_rng(0)
    np.save(tmp_path / "images.npy", rng.integers(0, 255, (5, 8, 8, 3), dtype=np.uint8))
    np.save(tmp_path / "spectra.npy", rng.random((5, 6, 10), dtype=np.float32))
    mapped = MetalloDataset(
        tmp_path / "images.npy",
        tmp_path / "spectra.npy",
        np.array([4, 1, 3]),
        np.array([0.5, 1.5, 2.5]),
        ["e", "b", "d"],
    )
    held = InMemoryDataset(mapped, "cpu")
    assert len(held) == 3 and InMemoryDataset.nbytes(mapped) == 3 * (8 * 8 * 3 + 6 * 10 * 4)
    for i in range(3):
        for key in ("pixel_values", "spectra", "labels"):
            assert torch.equal(held[i][key], mapped[i][key])


def test_data_on_device_setting(tmp_path):
    from metallo.training.trainer import use_data_on_device

    args, _ = build_training_arguments({"early_stopping_patience": 0, "use_cpu": True}, tmp_path)
    assert use_data_on_device("auto", None, args) is False  # CPU: the memory maps are already in RAM
    assert use_data_on_device(True, None, args) is True
    with pytest.raises(MetalloError, match="train.data_on_device must be true, false or auto; got 'sometimes'"):
        build_training_arguments({"early_stopping_patience": 0, "data_on_device": "sometimes"}, tmp_path)


# ----------------------------------------------------------------------------------------------
# tracking: an unreachable server, runs left RUNNING by killed trainings
# ----------------------------------------------------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_tracking_server_gives_up_within_seconds_with_one_warning(monkeypatch):
    import time
    import warnings

    from metallo.tracking import tracker as tracking

    for key in tracking.HTTP_DEFAULTS:  # set, then unset: monkeypatch removes what the tracker sets afterwards
        monkeypatch.setenv(key, "unset")
        monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")  # the user's own setting is kept
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = Tracker("metallo")
        tracker.start(run_name="x", tags={"a": "b"})
        tracker.log_params({"train": {"learning_rate": 0.1}})
        tracker.log_metrics({"loss": 1.0}, step=1)
        tracker.finish()
    elapsed = time.monotonic() - started
    assert elapsed < 60, elapsed  # MLflow's defaults retry for about 4 minutes
    messages = [str(w.message) for w in caught if "MLflow" in str(w.message)]
    assert len(messages) == 1 and "cannot be reached" in messages[0] and "127.0.0.1" in messages[0]
    assert tracker.enabled is False and tracker.run_id is None

    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == tracking.HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"


def test_runs_left_running_by_dead_processes_are_marked_killed(tmp_path, monkeypatch):
    import socket
    import subprocess
    import sys

    import mlflow

    from metallo.tracking import stale_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("metallo", artifact_location=(tmp_path / "art").as_uri())
    other_id = client.create_experiment("someone-else", artifact_location=(tmp_path / "art2").as_uri())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    runs = {
        # tagged as before (visible metallo.* names) and as now (mlflow.metallo.*, off the run page)
        "dead": client.create_run(experiment_id, tags={"metallo.pid": str(dead.pid), "metallo.host": host}),
        "dead, hidden tags": client.create_run(
            experiment_id, tags={stale_runs.PID_TAG: str(dead.pid), stale_runs.HOST_TAG: host}
        ),
        "alive": client.create_run(experiment_id, tags=stale_runs.owner_tags()),
        "reused pid": client.create_run(experiment_id, tags={**stale_runs.owner_tags(), stale_runs.START_TAG: "1"}),
        "other host": client.create_run(
            experiment_id, tags={"metallo.pid": str(dead.pid), "metallo.host": "elsewhere"}
        ),
        "no owner": client.create_run(experiment_id),
        "finished": client.create_run(experiment_id, tags={"metallo.pid": str(dead.pid), "metallo.host": host}),
        "other experiment": client.create_run(other_id, tags={"metallo.pid": str(dead.pid), "metallo.host": host}),
    }
    client.set_terminated(runs["finished"].info.run_id, "FINISHED")

    tracker = Tracker("metallo")
    new_run = tracker.start(run_name="next training")
    status = {name: client.get_run(run.info.run_id).info.status for name, run in runs.items()}
    assert status == {
        "dead": "KILLED",
        "dead, hidden tags": "KILLED",
        "alive": "RUNNING",
        "reused pid": "KILLED",
        "other host": "RUNNING",
        "no owner": "RUNNING",
        "finished": "FINISHED",
        "other experiment": "RUNNING",
    }
    tags = client.get_run(new_run).data.tags
    assert tags[stale_runs.PID_TAG] == str(os.getpid()) and tags[stale_runs.HOST_TAG] == host
    # the MLflow UI shows the tags not under mlflow.: none of the owner bookkeeping
    assert not {"metallo.pid", "metallo.host", "metallo.pid_start"} & set(tags)
    assert all(key.startswith("mlflow.") for key in stale_runs.owner_tags())
    # the experiment opens as model training (not the GenAI overview) with a description
    experiment = client.get_experiment(experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "test/" in experiment.tags["mlflow.note.content"]
    tracker.finish()


def _start_tracker_at(barrier, uri: str, results) -> None:
    """One queued experiment's train stage, reduced to its first MLflow call: start a run once all are ready."""
    import warnings

    os.environ["MLFLOW_TRACKING_URI"] = uri
    tracker = Tracker("metallo")
    tracker.client().search_experiments()  # open the store first, so that all start together
    barrier.wait()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_id = tracker.start(run_name="racing")
        lineage.log_datasets(tracker, lineage.split_datasets(_SPLITS, "data/processed", "same data"))
    results.put((tracker.enabled, run_id, [str(w.message) for w in caught]))


#: Two tiny splits, as ``split_datasets`` reads them (sample ids and labels).
_SPLITS = {
    split: SimpleNamespace(sample_ids=[f"{split}-{i}" for i in range(3)], labels=np.arange(3.0))
    for split in ("train", "val")
}


def test_runs_started_at_once_on_a_new_store_share_the_experiment_and_datasets(tmp_path):
    """Queued experiments on a fresh tracking server all look for the experiment (and for their datasets),
    find none and create it; MLflow checks, then inserts, so all but one lose the insert. The losers must
    find the winner's rows, not give up tracking."""
    import multiprocessing

    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(uri).create_experiment("created first, so the store exists")
    context = multiprocessing.get_context("fork")
    n = 6
    barrier, results = context.Barrier(n), context.Queue()
    workers = [context.Process(target=_start_tracker_at, args=(barrier, uri, results)) for _ in range(n)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    disabled = [m for _, _, messages in outcomes for m in messages if "tracking disabled" in m]
    assert [enabled for enabled, _, _ in outcomes] == [True] * n, disabled
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("metallo")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted(run_id for _, run_id, _ in outcomes)
    assert all(sorted(d.dataset.name for d in r.inputs.dataset_inputs) == ["train", "val"] for r in runs)


def test_run_and_version_descriptions_name_the_experiment_the_changes_and_the_baselines(monkeypatch):
    from metallo.prediction.mlflow_model import logged_model_name
    from metallo.tracking.lineage import changed_params, note_with_results, run_note, version_description

    changed = changed_params({"model": {"hidden_dim": 24, "name": "metallonet"}}, {"model": {"hidden_dim": 16}})
    assert changed == {"model.hidden_dim": (16, 24), "model.name": (None, "metallonet")}
    note = run_note("blest-site", "metallonet", {"model.hidden_dim": (16, 24)})
    assert "DVC experiment `blest-site`" in note and "`model.hidden_dim`: 16 → 24" in note
    metrics = {"test/rmse": 1.5, "test/r2": -0.5, "baseline/classical/rmse": 0.59, "baseline/classical/r2": 0.76}
    described = note_with_results(note, metrics)
    assert described.startswith(note) and "| model | 1.5 | -0.500 |" in described
    assert "| classical baseline | 0.59 | 0.760 |" in described and "| test split | RMSE | R² |" in described
    assert note_with_results(described, metrics) == described  # a re-evaluation replaces, not appends
    assert "Trained by the run 'blest-site'" in version_description(metrics, "blest-site")
    monkeypatch.setenv("DVC_EXP_NAME", "blest-site")
    assert logged_model_name("metallo_metallonet", "abcdef123456") == "metallo-blest-site"
    monkeypatch.delenv("DVC_EXP_NAME")
    assert logged_model_name("metallo_metallonet", "abcdef123456") == "metallo-metallonet-abcdef12"
