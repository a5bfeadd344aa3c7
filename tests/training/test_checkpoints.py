"""Checkpoint fingerprints: ``train.resume`` only continues the training its checkpoint belongs to.

Fast tests on real files (no training); the end-to-end resume tests are in test_fault_injection.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from metallo.errors import MetalloError
from metallo.layout import Paths
from metallo.training import checkpoints
from metallo.training.checkpoints import (
    FINGERPRINT_FILE,
    FingerprintCallback,
    fingerprint,
    last_complete_checkpoint,
    prepare,
)
from tests.helpers.project import REPO, TINY_PARAMS, merge


@pytest.fixture
def project(tmp_path, monkeypatch) -> tuple[dict, Paths]:
    monkeypatch.chdir(tmp_path)
    paths = Paths()
    paths.split.mkdir(parents=True)
    (paths.split / "split.parquet").write_bytes(b"split v1")
    paths.stats.write_text('{"label": {"mean": 3.0, "std": 1.0}}')
    paths.processed.mkdir(parents=True)
    (paths.processed / "samples.parquet").write_bytes(b"ids a b c, labels 1.0 2.0 3.0")
    (paths.processed / "images.npy").write_bytes(b"images v1")
    params = merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY_PARAMS)
    return params, paths


def _checkpoint(folder: Path, step: int, print_: dict | None, state: str | None = '{"global_step": 1}') -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    if print_ is not None:
        (path / FINGERPRINT_FILE).write_text(json.dumps(print_))
    return path


def _edited(params: dict, section: str, **values) -> dict:
    out = copy.deepcopy(params)
    out[section].update(values)
    return out


@pytest.mark.parametrize(
    "section,key,value",
    [
        ("train", "learning_rate", 0.5),
        ("model", "hidden_dim", 32),
        ("train", "num_train_epochs", 7),
        ("data", "spectrum_length", 65),
        ("convert", "crop", 60),
        ("train", "seed", 1),
        ("model", "loss", "huber"),
    ],
)
def test_params_that_shape_training_change_the_fingerprint(project, section, key, value):
    params, paths = project
    assert (
        fingerprint(_edited(params, section, **{key: value}), paths)["digest"] != fingerprint(params, paths)["digest"]
    )


@pytest.mark.parametrize(
    "key,value",
    [
        ("resume", True),
        ("logging_steps", 50),
        ("save_total_limit", 5),
        ("report_to", []),
        ("dataloader_num_workers", 2),
        ("disable_tqdm", False),
    ],
)
def test_options_that_do_not_change_the_result_keep_the_fingerprint(project, key, value):
    params, paths = project
    assert fingerprint(_edited(params, "train", **{key: value}), paths) == fingerprint(params, paths)
    # and sections train does not read do not count either
    assert fingerprint(_edited(params, "evaluate", batch_size=3), paths) == fingerprint(params, paths)


def test_a_new_split_or_new_statistics_change_the_fingerprint(project):
    params, paths = project
    before = fingerprint(params, paths)
    (paths.split / "split.parquet").write_bytes(b"split v2")
    after_split = fingerprint(params, paths)
    paths.stats.write_text('{"label": {"mean": 3.5, "std": 1.0}}')
    after_stats = fingerprint(params, paths)
    assert len({before["digest"], after_split["digest"], after_stats["digest"]}) == 3
    assert checkpoints.differences(before, after_split) == ["data/split/split.parquet changed"]


@pytest.mark.parametrize("changed", ["samples.parquet", "images.npy"])
def test_resume_refuses_a_checkpoint_trained_on_other_data_with_the_same_split_and_stats(tmp_path, project, changed):
    """Two training labels swapped in the raw data: the split and the label statistics come out byte-identical,
    only the processed table differs. The checkpoint saw the old labels, so resuming is refused."""
    params, paths = project
    folder = tmp_path / "checkpoints"
    _checkpoint(folder, 3, fingerprint(params, paths))
    edits = {"samples.parquet": b"ids a b c, labels 2.0 1.0 3.0", "images.npy": b"images v2"}
    (paths.processed / changed).write_bytes(edits[changed])
    with pytest.raises(MetalloError) as err:
        prepare(folder, fingerprint(params, paths), resume=True)
    message = str(err.value)
    assert f"data/processed/{changed} changed" in message and "checkpoint-3" in message
    assert "set train.resume: false" in message
    assert (folder / "checkpoint-3").is_dir()


def test_a_checkpoint_without_fingerprint_or_state_is_incomplete(tmp_path, project):
    params, paths = project
    current = fingerprint(params, paths)
    folder = tmp_path / "checkpoints"
    _checkpoint(folder, 3, current)
    _checkpoint(folder, 6, None)  # killed before the fingerprint was written
    _checkpoint(folder, 9, current, state='{"global_st')  # trainer state truncated
    _checkpoint(folder, 12, current, state=None)  # killed before the trainer state
    (folder / "checkpoint-15").mkdir()
    (folder / "checkpoint-15" / "trainer_state.json").write_text("{}")
    (folder / "checkpoint-15" / FINGERPRINT_FILE).write_text('{"dig')  # fingerprint truncated
    assert last_complete_checkpoint(folder) == str(folder / "checkpoint-3")
    assert prepare(folder, current, resume=True) == str(folder / "checkpoint-3")


@pytest.mark.parametrize(
    "section,key,value,named",
    [
        ("train", "learning_rate", 0.01, "train.learning_rate: 0.002 -> 0.01"),
        ("model", "hidden_dim", 32, "model.hidden_dim: 16 -> 32"),
    ],
)
def test_resume_refuses_a_checkpoint_of_other_params_and_says_how_to_start_fresh(
    tmp_path, project, section, key, value, named
):
    params, paths = project
    folder = tmp_path / "checkpoints"
    _checkpoint(folder, 4, fingerprint(params, paths))
    with pytest.raises(MetalloError) as err:
        prepare(folder, fingerprint(_edited(params, section, **{key: value}), paths), resume=True)
    message = str(err.value)
    assert named in message and "checkpoint-4" in message
    assert "set train.resume: false" in message and f"Delete {folder}/" in message
    assert "\n" not in message
    assert (folder / "checkpoint-4").is_dir()  # nothing deleted by a refusal


def test_without_resume_old_checkpoints_are_cleared(tmp_path, project):
    params, paths = project
    folder = tmp_path / "checkpoints"
    _checkpoint(folder, 4, {"digest": "something else"})
    assert prepare(folder, fingerprint(params, paths), resume=False) is None
    assert not folder.exists()
    assert prepare(folder, fingerprint(params, paths), resume=True) is None  # nothing to resume: fresh start


def test_the_callback_writes_the_fingerprint_into_the_saved_checkpoint(tmp_path, project):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    params, paths = project
    current = fingerprint(params, paths)
    args = TrainingArguments(output_dir=str(tmp_path / "checkpoints"), use_cpu=True, report_to="none")
    state = TrainerState(global_step=5)
    (tmp_path / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    FingerprintCallback(current).on_save(args, state, TrainerControl())
    written = tmp_path / "checkpoints" / "checkpoint-5" / FINGERPRINT_FILE
    assert json.loads(written.read_text()) == current
    assert [p.name for p in written.parent.iterdir()] == [FINGERPRINT_FILE]  # no temporary left beside it
