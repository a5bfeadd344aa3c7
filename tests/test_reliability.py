"""Reliability: interrupted runs, reproducibility, safe loading, tracking failures, clear errors.

Real git, real DVC CLI, real MLflow SQLite stores, real subprocesses killed with SIGKILL; nothing is mocked.
The slow tests share one tiny project built by ``dvc repro`` (``shared_project``) and work on copies of it.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from metallo.errors import MetalloError
from metallo.io import atomic_path
from tests.conftest import REPO, TINY_PARAMS, make_project, project_env, run

SOURCE = REPO / "metallo"
DATA_STAGES = ("synthesize", "ingest", "convert", "split")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(shared_project) -> Path:
    return shared_project


def clone(src: Path, dst: Path) -> Path:
    """A full copy of a project (git, DVC cache, outputs, MLflow store)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def edit_params(root: Path, edit) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    edit(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def remove(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def stage(root: Path, name: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m stages.<name>`` in ``root``, as DVC runs it (never raises on failure)."""
    return run([sys.executable, "-m", f"stages.{name}"], root, check=False, **env)


def stages_at_once(*jobs: tuple[Path, str, dict]) -> list[subprocess.CompletedProcess]:
    """Run several ``(root, stage, env)`` stage scripts concurrently (they spend most of their time importing)."""
    procs = []
    for root, name, env in jobs:
        out, err = open(root.parent / f"{root.name}-{name}.out", "w+"), open(root.parent / f"{root.name}-{name}.err", "w+")
        cmd = [sys.executable, "-m", f"stages.{name}"]
        env = {"OMP_NUM_THREADS": "1", **env}  # one thread each: they share the machine's cores
        procs.append((cmd, out, err, subprocess.Popen(cmd, cwd=root, env=project_env(**env), stdout=out, stderr=err)))
    try:
        for _, _, _, proc in procs:
            proc.wait(timeout=900)
    finally:
        for _, _, _, proc in procs:  # after a timeout, none is left running
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = []
    for cmd, out, err, proc in procs:
        with out, err:
            out.seek(0)
            err.seek(0)
            results.append(subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read()))
    return results


def complete_checkpoints(folder: Path) -> dict[int, dict]:
    """step -> trainer state of every checkpoint whose trainer_state.json and fingerprint are complete."""
    found = {}
    for path in folder.glob("checkpoint-*"):
        try:
            json.loads((path / "metallo_fingerprint.json").read_text())
            found[int(path.name.split("-")[1])] = json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
    return found


def error_message(result: subprocess.CompletedProcess) -> str:
    """The user-facing error of a failed stage; fails if it is missing or comes with a traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout[-2000:], result.stderr[-4000:])
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    assert "metallo: error:" in result.stderr, result.stderr[-4000:]
    message = result.stderr.split("metallo: error:", 1)[1].strip()
    assert message and "\n\n" not in message, f"not one paragraph:\n{message}"
    return message


def lock_outs(lock: dict, stage_name: str) -> dict[str, str]:
    return {out["path"]: out["md5"] for out in lock["stages"][stage_name]["outs"]}


def tiny_processor():
    from metallo.processing import MetalloProcessor

    return MetalloProcessor(image_mean=[0.5] * 3, image_std=[0.25] * 3, spectra_mean=[0.0] * 64,
                            spectra_std=[1.0] * 64, image_size=64, resize=72, crop=64)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """An untrained tiny MetalloNet saved as the train stage saves it (config, safetensors, preprocessor)."""
    from metallo.models import create_model

    out = tmp_path_factory.mktemp("tiny-model")
    torch.manual_seed(0)
    model = create_model("metallonet", n_spectra=24, spectrum_length=64, grid=[6, 4], image_size=64, hidden_dim=16,
                         label_mean=3.0, label_std=1.0)
    model.save_pretrained(out)
    tiny_processor().save_pretrained(out)
    return out


class _CreatesFileWhenUnpickled:
    """Unpickling this object creates ``marker``: evidence that a loader executed pickle code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# ----------------------------------------------------------------------------------------------
# 1. Interrupted runs
# ----------------------------------------------------------------------------------------------


def _tmp_siblings(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.tmp-*"))


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_file_write_interrupted_leaves_destination_untouched(tmp_path, error):
    dest = tmp_path / "out.json"
    dest.write_text("old")
    with pytest.raises(error):
        with atomic_path(dest) as tmp:
            tmp.write_text("new, half written")
            raise error()
    assert dest.read_text() == "old"
    assert _tmp_siblings(dest) == []

    fresh = tmp_path / "never.json"
    with pytest.raises(error):
        with atomic_path(fresh) as tmp:
            tmp.write_text("partial")
            raise error()
    assert not fresh.exists() and _tmp_siblings(fresh) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_folder_write_interrupted_leaves_destination_untouched(tmp_path, error):
    dest = tmp_path / "models" / "model"
    dest.mkdir(parents=True)
    (dest / "config.json").write_text("old")
    with pytest.raises(error):
        with atomic_path(dest) as tmp:
            tmp.mkdir()
            (tmp / "config.json").write_text("new")
            (tmp / "model.safetensors").write_bytes(b"half")
            raise error()
    assert sorted(p.name for p in dest.iterdir()) == ["config.json"]
    assert (dest / "config.json").read_text() == "old"
    assert _tmp_siblings(dest) == []

    with atomic_path(dest) as tmp:  # and a completed write replaces the whole folder
        tmp.mkdir()
        (tmp / "model.safetensors").write_bytes(b"new")
    assert sorted(p.name for p in dest.iterdir()) == ["model.safetensors"]
    assert _tmp_siblings(dest) == []


def test_resume_passes_over_checkpoints_a_kill_left_half_written(tmp_path):
    from metallo.training.checkpoints import FINGERPRINT_FILE
    from metallo.training.train import last_complete_checkpoint  # still importable from train

    folder = tmp_path / "checkpoints"
    assert last_complete_checkpoint(folder) is None  # no folder yet
    folder.mkdir()
    assert last_complete_checkpoint(folder) is None
    for step, state in ((3, '{"global_step": 3}'), (6, None), (9, '{"global_st'), (12, None)):
        (folder / f"checkpoint-{step}").mkdir()
        (folder / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"weights")
        if state is not None:
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
        (folder / f"checkpoint-{step}" / FINGERPRINT_FILE).write_text('{"digest": "d"}')
    (folder / "checkpoint-99.tmp").mkdir()
    assert last_complete_checkpoint(folder) == str(folder / "checkpoint-3")
    (folder / "checkpoint-12" / "trainer_state.json").write_text('{"global_step": 12}')
    assert last_complete_checkpoint(folder) == str(folder / "checkpoint-12")


@pytest.mark.slow
def test_killed_training_leaves_no_model_and_resumes_from_its_last_checkpoint(shared, tmp_path):
    root = clone(shared, tmp_path / "project")
    remove(root, "checkpoints", "models/model", "metrics/train.json", "metrics/train_log.csv")
    edit_params(root, lambda p: p["train"].update(num_train_epochs=4, save_strategy="epoch", save_total_limit=2))

    log_path = tmp_path / "killed.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=root, env=project_env(),
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600
            while not complete_checkpoints(root / "checkpoints"):
                assert proc.poll() is None, f"training ended before its first checkpoint:\n{log_path.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    # No half-written output that DVC or evaluate could take as the model.
    assert not (root / "models/model").exists()
    assert not (root / "metrics/train.json").exists()
    checkpoints = complete_checkpoints(root / "checkpoints")
    last = max(checkpoints)
    steps_per_epoch = int(round(checkpoints[min(checkpoints)]["global_step"] / checkpoints[min(checkpoints)]["epoch"]))
    total = 4 * steps_per_epoch
    assert last < total

    # A kill during the next save leaves a newer checkpoint folder without trainer_state.json: pass it over.
    partial = root / "checkpoints" / f"checkpoint-{last + steps_per_epoch}"
    if not partial.exists():
        partial.mkdir()
        weights = (root / "checkpoints" / f"checkpoint-{last}" / "model.safetensors").read_bytes()
        (partial / "model.safetensors").write_bytes(weights[: len(weights) // 2])

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("metallo").experiment_id
    killed_run = [r for r in client.search_runs([experiment_id]) if r.info.status == "RUNNING"]
    assert len(killed_run) == 1 and killed_run[0].data.tags["metallo.pid"] == str(proc.pid)

    edit_params(root, lambda p: p["train"].update(resume=True))
    resumed = stage(root, "train")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-5000:]
    assert f"train: resuming from {os.path.join('checkpoints', f'checkpoint-{last}')}" in resumed.stdout
    # The next train marked the killed run's MLflow run KILLED (its process is gone).
    assert client.get_run(killed_run[0].info.run_id).info.status == "KILLED"
    assert f"marked run {killed_run[0].info.run_id} KILLED" in resumed.stdout

    summary = json.loads((root / "metrics/train.json").read_text())
    assert summary["steps"] == total and summary["epochs"] == pytest.approx(4.0)
    final = complete_checkpoints(root / "checkpoints")
    assert max(final) == total and final[total]["global_step"] == total
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (root / "models/model" / name).is_file()
    assert list((root / "models").glob(".model.tmp-*")) == []
    # The training curve holds every step once: the steps run after the checkpoint by the killed run are redone.
    log = pd.read_csv(root / "metrics/train_log.csv")
    assert sorted(log.dropna(subset=["train_loss"])["step"]) == list(range(1, total + 1))


# ----------------------------------------------------------------------------------------------
# 2. Reproducibility
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_same_seed_on_cpu_gives_the_same_training(shared, tmp_path):
    root = clone(shared, tmp_path / "project")

    def outcome(project: Path) -> dict:
        return {"train.json": json.loads((project / "metrics/train.json").read_text()),
                "log": (project / "metrics/train_log.csv").read_text(),
                "weights": hashlib.sha256((project / "models/model/model.safetensors").read_bytes()).hexdigest()}

    def train_on_cpu() -> dict:
        remove(root, "models/model", "metrics/train.json", "metrics/train_log.csv")
        result = stage(root, "train", CUDA_VISIBLE_DEVICES="")
        assert result.returncode == 0, result.stderr[-5000:]
        return outcome(root)

    # Without a GPU, the shared project's `dvc repro` trained on the CPU with the same seed: that is the first run.
    first = train_on_cpu() if torch.cuda.is_available() else outcome(shared)
    again = train_on_cpu()
    volatile = ("train_runtime_s", "train_samples_per_second")
    assert {k: v for k, v in again["train.json"].items() if k not in volatile} == \
        {k: v for k, v in first["train.json"].items() if k not in volatile}
    assert again["log"] == first["log"]
    assert again["weights"] == first["weights"]


@pytest.mark.slow
def test_demo_data_stages_reproduce_the_committed_dvc_lock(tmp_path):
    committed = yaml.safe_load((REPO / "dvc.lock").read_text()) if (REPO / "dvc.lock").is_file() else {}
    missing = [s for s in DATA_STAGES if s not in committed.get("stages", {})]
    if missing:
        pytest.skip(f"the repository's dvc.lock has no entry for stage(s) {', '.join(missing)}: nothing to compare with")
    root = make_project(tmp_path / "demo", tiny=False, extra_files=("dvc.lock",))

    result = run(["dvc", "repro", "split"], root)
    for name in DATA_STAGES:
        assert f"Running stage '{name}'" in result.stdout
    fresh = yaml.safe_load((root / "dvc.lock").read_text())
    for name in DATA_STAGES:
        assert lock_outs(fresh, name) == lock_outs(committed, name), f"stage {name} did not reproduce dvc.lock"


# ----------------------------------------------------------------------------------------------
# 3. Safe loading
# ----------------------------------------------------------------------------------------------


def test_pickle_only_weights_are_refused_and_never_unpickled(model_dir, tmp_path):
    from metallo.prediction import load_model

    marker = tmp_path / "UNPICKLED"
    evil = tmp_path / "pickled"
    evil.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy2(model_dir / name, evil / name)
    (evil / "pytorch_model.bin").write_bytes(pickle.dumps(_CreatesFileWhenUnpickled(marker)))
    with pytest.raises(MetalloError, match="safetensors"):
        load_model(evil, device="cpu")
    assert not marker.exists()

    # Beside a safetensors file, a pickle is ignored as well.
    both = tmp_path / "both"
    shutil.copytree(model_dir, both)
    (both / "pytorch_model.bin").write_bytes(pickle.dumps(_CreatesFileWhenUnpickled(marker)))
    model, _ = load_model(both, device="cpu")
    assert model.config.spectrum_length == 64
    assert not marker.exists()


def _load_calls(tree: ast.AST, modules: tuple[str, ...]) -> list[ast.Call]:
    """Every ``<module>.load(...)`` call in ``tree`` with ``<module>`` one of ``modules``."""
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name) and node.func.value.id in modules]


def _source_calls(modules: tuple[str, ...]):
    """(file, call) for every such call in metallo/."""
    for path in sorted(SOURCE.rglob("*.py")):
        for call in _load_calls(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), modules):
            yield path.relative_to(REPO), call


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value.value if isinstance(keyword.value, ast.Constant) else keyword.value
    return None


def test_the_source_scan_finds_unsafe_calls():
    tree = ast.parse("np.load(f, allow_pickle=True)\nnumpy.load(f)\ntorch.load(f)\ntorch.load(f, weights_only=True)\n")
    assert [_keyword(c, "allow_pickle") for c in _load_calls(tree, ("np", "numpy"))] == [True, None]
    assert [_keyword(c, "weights_only") for c in _load_calls(tree, ("torch",))] == [None, True]


def test_numpy_never_loads_pickles():
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text(encoding="utf-8").replace(" ", "")
        assert "allow_pickle=True" not in text, f"{path.relative_to(REPO)} enables allow_pickle"
    for where, call in _source_calls(("np", "numpy")):
        assert _keyword(call, "allow_pickle") in (None, False), f"{where}:{call.lineno} np.load with allow_pickle"


def _pretrained_calls():
    """(file, call) for every ``X.from_pretrained(...)`` in metallo/ except Metallo's own processor loader."""
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained"
                    and not (isinstance(node.func.value, ast.Name) and node.func.value.id in ("MetalloProcessor", "cls"))):
                yield path.relative_to(REPO), node


def test_every_from_pretrained_refuses_remote_code():
    calls = list(_pretrained_calls())
    assert len(calls) >= 2  # AutoConfig and AutoModel in metallo/prediction/loading.py at least
    for where, call in calls:
        assert _keyword(call, "trust_remote_code") is False, f"{where}:{call.lineno} without trust_remote_code=False"


def test_torch_load_is_always_weights_only():
    for where, call in _source_calls(("torch",)):
        assert _keyword(call, "weights_only") is True, f"{where}:{call.lineno} torch.load without weights_only=True"


def test_pil_decompression_bomb_limit_stays_on():
    import importlib
    import pkgutil

    import metallo
    from PIL import Image

    for module in pkgutil.walk_packages(metallo.__path__, "metallo."):
        importlib.import_module(module.name)
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS > 0


def test_ui_binds_localhost_only():
    from metallo.cli import UI_HOST, build_parser, ui_command

    cmd = ui_command(5123)
    assert cmd[:4] == [sys.executable, "-m", "mlflow", "ui"]  # this environment's mlflow, PATH or not
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" == UI_HOST
    assert cmd[cmd.index("--port") + 1] == "5123"
    assert "0.0.0.0" not in cmd and cmd.count("--host") == 1
    args = build_parser().parse_args(["ui"])
    assert args.port == 5000 and not hasattr(args, "host")  # no option to widen the bind from the command line


# ----------------------------------------------------------------------------------------------
# 4. Tracking robustness
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_unusable_or_locked_tracking_store_does_not_break_train_or_evaluate(shared, tmp_path):
    """Three runs at once, each in its own copy of the project:

    evaluate and train against a store that cannot be created (its folder is a regular file),
    and train while the project's own store is held under an exclusive SQLite lock.
    """
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file where the store's folder should be")
    dead = {"MLFLOW_TRACKING_URI": f"sqlite:///{blocker}/mlflow.db"}

    evaluate_root = clone(shared, tmp_path / "evaluate")
    assert json.loads((evaluate_root / "models/run.json").read_text())["run_id"]  # evaluate logs into this run
    remove(evaluate_root, "metrics/eval.json", "metrics/predictions.csv")
    train_root = clone(shared, tmp_path / "train")
    locked_root = clone(shared, tmp_path / "locked")
    for root in (train_root, locked_root):
        remove(root, "models/model", "models/run.json", "metrics/train.json")

    holder = sqlite3.connect(locked_root / "mlflow.db", isolation_level=None, timeout=1)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        evaluated, trained, locked = stages_at_once((evaluate_root, "evaluate", dead), (train_root, "train", dead),
                                                    (locked_root, "train", {}))
    finally:
        holder.rollback()
        holder.close()

    for result in (evaluated, trained, locked):
        assert result.returncode == 0, f"{result.args}:\n{result.stdout[-2000:]}\n{result.stderr[-5000:]}"
    for result in (evaluated, trained):
        assert "MLflow tracking disabled" in result.stderr, result.stderr[-5000:]
    n_test = TINY_PARAMS["synthesize"]["samples_per_slice"]["2"]
    assert json.loads((evaluate_root / "metrics/eval.json").read_text())["n"] == n_test
    assert (evaluate_root / "metrics/predictions.csv").is_file()
    for root in (train_root, locked_root):
        assert (root / "models/model/model.safetensors").is_file()
        assert json.loads((root / "metrics/train.json").read_text())["steps"] > 0
        assert (root / "models/run.json").is_file()
    assert json.loads((train_root / "models/run.json").read_text())["run_id"] is None
    assert blocker.is_file()


@pytest.mark.slow
def test_queued_experiments_log_to_the_project_store(shared, tmp_path):
    root = clone(shared, tmp_path / "project")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline results"], root)
    run(["dvc", "exp", "run", "--queue", "-S", "model.hidden_dim=20"], root)
    run(["dvc", "exp", "run", "--run-all"], root)  # starts a queue worker and waits for it
    status = run(["dvc", "queue", "status"], root).stdout
    assert "Queued" not in status and "Running" not in status and "Failed" not in status, status

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("metallo")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["model.hidden_dim"] for r in runs) == ["16", "20"]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert "test_rmse" in r.data.metrics
    queued_run = next(r for r in runs if r.data.params["model.hidden_dim"] == "20")
    assert queued_run.data.tags.get("dvc.experiment")
    assert list((root / ".dvc" / "tmp").rglob("mlflow.db")) == []


# ----------------------------------------------------------------------------------------------
# 5. Clear errors
# ----------------------------------------------------------------------------------------------


def _rename(section: str, old: str, new: str):
    def edit(params):
        params[section] = {(new if k == old else k): v for k, v in params[section].items()}
    return edit


@pytest.mark.slow
def test_misspelt_params_and_a_missing_raw_folder_get_one_paragraph_messages(shared, tmp_path):
    cases = {  # name -> (params edit, stage, words the message must hold)
        "hiden_dim": (_rename("model", "hidden_dim", "hiden_dim"), "train", ("hiden_dim", "hidden_dim")),
        "learnig_rate": (_rename("train", "learning_rate", "learnig_rate"), "train",
                         ("train.learnig_rate", "learning_rate")),
        "raw_dir": (lambda p: p["ingest"].update(raw_dir="data/nope"), "ingest",
                    ("data/nope", "does not exist", "ingest.raw_dir")),  # what is wrong, and what to change
    }
    jobs = []
    for name, (edit, stage_name, _) in cases.items():
        root = clone(shared, tmp_path / name)
        edit_params(root, edit)
        jobs.append((root, stage_name, {}))
    for (name, (_, _, words)), result in zip(cases.items(), stages_at_once(*jobs)):
        message = error_message(result)
        for word in words:
            assert word in message, f"{name}: {word!r} not in {message!r}"


def test_model_directory_of_another_kind_is_refused(tmp_path):
    from transformers import BertConfig, BertModel, ViTConfig, ViTImageProcessor, ViTModel

    from metallo.prediction import load_model

    bert = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=8, max_position_embeddings=16)).save_pretrained(bert)
    with pytest.raises(MetalloError, match="'bert' model, not a Metallo model") as err:
        load_model(bert, device="cpu")
    assert "metallonet" in str(err.value)

    # An image model folder even carries a preprocessor_config.json (of another format).
    vit = tmp_path / "vit"
    ViTModel(ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8, image_size=16,
                       patch_size=8)).save_pretrained(vit)
    ViTImageProcessor().save_pretrained(vit)
    with pytest.raises(MetalloError, match="'vit' model, not a Metallo model"):
        load_model(vit, device="cpu")

    with pytest.raises(MetalloError, match="no config.json"):
        load_model(tmp_path / "nothing-here", device="cpu")


def test_data_of_another_shape_than_the_model_is_refused(model_dir, tmp_path):
    from metallo.data.synthesize import synthesize
    from metallo.prediction import load_model, predict_arrays
    from metallo.prediction import predict

    model, processor = load_model(model_dir, device="cpu")
    images = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    with pytest.raises(MetalloError) as err:
        predict_arrays(model, processor, images, np.zeros((2, 24, 100), dtype=np.float32))
    assert "(24, 100)" in str(err.value) and "(24, 64)" in str(err.value)
    with pytest.raises(MetalloError) as err:
        predict_arrays(model, processor, np.zeros((2, 64, 64), dtype=np.uint8), np.zeros((2, 24, 64), np.float32))
    assert "(2, 64, 64)" in str(err.value)
    predictions, _ = predict_arrays(model, processor, images, np.zeros((2, 24, 64), dtype=np.float32))
    assert predictions.shape == (2,)

    raw = tmp_path / "raw"
    synthesize(raw, samples_per_slice={"1": 2}, image_size=64, spectrum_length=100, workers=1, progress=False)
    with pytest.raises(MetalloError) as err:
        predict(model_dir, raw / "manifest.csv", on_error="fail", workers=1, show_progress=False)
    assert "(24, 100)" in str(err.value) and "(24, 64)" in str(err.value)
