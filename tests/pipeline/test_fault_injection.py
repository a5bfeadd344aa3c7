"""Fault injection: kills, bad inputs, diverging training, changed params, an unreachable tracking server.

Everything is real: subprocesses killed with SIGKILL, the ``metallo`` CLI in a subprocess, the
DVC CLI on a tiny git + DVC project (tests/conftest.py), MLflow SQLite stores. Fast tests run
by default; the pipeline-level ones are ``@pytest.mark.slow`` and share the session's tiny
``dvc repro`` (``shared_project``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.helpers.models import save_tiny_model
from tests.helpers.pipeline import clone, edit_params, error_message, remove, stages_at_once
from tests.helpers.processes import wait_for
from tests.helpers.project import REPO, project_env

# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _marked(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose environment carries ``METALLO_FAULT_MARKER=marker``."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("METALLO_FAULT_MARKER") == marker and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------------------------
# 1. pool workers die with their parent (metallo/parallel.py)
# ----------------------------------------------------------------------------------------------

POOL_SCRIPT = """
import time
from metallo.parallel import map_ordered
# Item 1 sleeps while the other worker, done with the short items, blocks reading the pool's pipe.
for _ in map_ordered(time.sleep, [0.0, 60.0, 0.0, 0.0], workers=2, chunksize=1, desc="t", show_progress=False):
    pass
"""


def test_pool_workers_die_when_their_parent_is_killed(tmp_path):
    marker = uuid.uuid4().hex
    parent = subprocess.Popen(
        [sys.executable, "-c", POOL_SCRIPT], cwd=REPO, env={**os.environ, "METALLO_FAULT_MARKER": marker}
    )
    try:
        workers = wait_for(
            lambda: (lambda found: found if len(found) >= 2 else None)(
                [p for p in _marked(marker) if p.pid != parent.pid]
            ),
            60,
            "two pool workers",
        )
        time.sleep(0.5)  # let the short items finish: one worker now waits on the pipe
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        started = time.monotonic()
        wait_for(lambda: not _marked(marker), 5, f"workers {[w.pid for w in workers]} to die with their parent")
        assert time.monotonic() - started < 5
    finally:
        for proc in _marked(marker):
            proc.kill()
        if parent.poll() is None:
            parent.kill()


# ----------------------------------------------------------------------------------------------
# 2. bad inputs through the CLI: a clear one-paragraph error, never a traceback
# ----------------------------------------------------------------------------------------------


def _variant(base: Path, dst: Path, edit) -> Path:
    shutil.copytree(base, dst)
    edit(dst)
    return dst


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_json(path: Path, update: dict) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **update}))


def _remote_code(folder: Path) -> None:
    """A config of an unknown model type whose auto_map points at a .py file that leaves a marker when imported."""
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="evil_remote_model",
        architectures=["EvilModel"],
        auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"},
    )
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(
        f"open({str(folder / 'CODE_RAN')!r}, 'w').write('x')\n"
        "from transformers import PretrainedConfig, PreTrainedModel\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil_remote_model'\n"
        "class EvilModel(PreTrainedModel):\n    config_class = EvilConfig\n"
    )


#: name -> (how to break a copy of a good model folder, extra CLI args, exit code, words the message must hold)
BAD_INPUTS = {
    "batch size 0": (None, ["--batch-size", "0"], 2, ("--batch-size", "positive integer", "got 0")),
    "negative batch size": (None, ["--batch-size", "-4"], 2, ("--batch-size", "got -4")),
    "truncated safetensors": (
        lambda d: _truncate(d / "model.safetensors"),
        [],
        1,
        ("model.safetensors", "corrupt", "retrain"),
    ),
    "garbage safetensors": (
        lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 16 + b"not a tensor file"),
        [],
        1,
        ("model.safetensors", "corrupt"),
    ),
    "unknown preprocessor key": (
        lambda d: _edit_json(d / "preprocessor_config.json", {"image_meen": [0.5] * 3}),
        [],
        1,
        ("preprocessor_config.json", "'image_meen'", "unknown key"),
    ),
    "missing preprocessor key": (
        lambda d: (d / "preprocessor_config.json").write_text(
            json.dumps(
                {k: v for k, v in json.loads((d / "preprocessor_config.json").read_text()).items() if k != "image_std"}
            )
        ),
        [],
        1,
        ("preprocessor_config.json", "'image_std'", "missing key"),
    ),
    "preprocessor not JSON": (
        lambda d: (d / "preprocessor_config.json").write_text("{image_mean: oops"),
        [],
        1,
        ("preprocessor_config.json", "not valid JSON"),
    ),
    "config not JSON": (
        lambda d: (d / "config.json").write_text('{"model_type": '),
        [],
        1,
        ("config.json", "not valid JSON"),
    ),
    "remote code in auto_map": (_remote_code, [], 1, ("auto_map", "never runs code")),
}


#: Runs ``metallo.cli.main(argv)`` once per case in ONE interpreter (one import of torch instead of
#: nine), with the case's stderr/stdout in its own files, exactly as ``metallo`` would print them;
#: an exception escaping the CLI is printed as the traceback a user would see.
DRIVER = """
import contextlib, json, sys, traceback
from metallo import cli
cases = json.loads(sys.argv[1])
for name, (argv, out, err) in cases.items():
    with open(out, "w") as o, open(err, "w") as e, contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            cli.main(argv)
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    with open(err + ".code", "w") as c:
        c.write(str(code))
"""


@pytest.fixture(scope="module")
def bad_input_results(tmp_path_factory):
    """Every BAD_INPUTS case through ``metallo predict`` in a subprocess; its stdin stays open and unread."""
    base = tmp_path_factory.mktemp("bad-inputs")
    good = save_tiny_model(base / "good")
    manifest = base / "manifest.csv"
    manifest.write_text("sample_id,slice_id,image,spectra\n")
    cases, models = {}, {}
    for i, (name, (breaks, extra, _, _)) in enumerate(BAD_INPUTS.items()):
        models[name] = _variant(good, base / f"case{i}", breaks) if breaks else good
        cases[name] = (
            [
                "predict",
                "--model",
                str(models[name]),
                "--manifest",
                str(manifest),
                "--out",
                str(base / f"case{i}.csv"),
                *extra,
            ],
            str(base / f"case{i}.out"),
            str(base / f"case{i}.err"),
        )
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, json.dumps(cases)],
        cwd=base,
        text=True,
        env=project_env(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(timeout=300)  # no input is ever sent: a prompt would hang here
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-4000:]
    return {
        name: (models[name], int(Path(e + ".code").read_text()), Path(o).read_text(), Path(e).read_text())
        for name, (_, o, e) in cases.items()
    }


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_gets_a_clear_error_without_traceback(bad_input_results, name):
    model, code, out, err = bad_input_results[name]
    expected_code, words = BAD_INPUTS[name][2], BAD_INPUTS[name][3]
    assert code == expected_code, (code, out[-2000:], err[-4000:])
    assert "Traceback" not in err and "Traceback" not in out, err[-4000:]
    assert "custom code" not in out.lower() or name == "remote code in auto_map"  # no trust prompt
    message = err.split("error:", 1)[1].strip() if "error:" in err else ""
    assert message and "\n\n" not in message, err
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert not (model / "CODE_RAN").exists(), "code from the model folder ran"


def test_transformers_itself_refuses_the_remote_code_folder(tmp_path):
    """Defence in depth: even past Metallo's own check, trust_remote_code=False neither prompts nor imports."""
    from transformers import AutoConfig, AutoModel

    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    _remote_code(folder)
    for loader in (AutoConfig, AutoModel):
        with pytest.raises((ValueError, OSError)):  # pytest's captured stdin also fails any prompt
            loader.from_pretrained(folder, trust_remote_code=False)
    assert not (folder / "CODE_RAN").exists()


# ----------------------------------------------------------------------------------------------
# 3. train-stage faults on copies of the session's tiny project (run at once: they mostly import)
# ----------------------------------------------------------------------------------------------


def _infinite_spectra_mean(root: Path) -> None:
    stats = json.loads((root / "data/split/stats.json").read_text())
    for key in ("spectra", "spectra_snv"):  # every normalised spectrum becomes inf/NaN, whatever preprocess.spectra
        stats[key]["mean"] = [float("inf")] * len(stats[key]["mean"])
    (root / "data/split/stats.json").write_text(json.dumps(stats))


def _swap_two_training_labels(root: Path) -> None:
    """Labels corrected in the raw data, as convert writes them: two training samples swap their ``dos``. The split
    and the train label statistics stay byte-identical; only the processed table changes."""
    import pandas as pd

    samples = pd.read_parquet(root / "data/processed/samples.parquet")
    split = pd.read_parquet(root / "data/split/split.parquet")
    first, second = split.loc[split["split"] == "train", "index"].to_numpy()[:2]
    samples.loc[[first, second], "dos"] = samples.loc[[second, first], "dos"].to_numpy()
    samples.to_parquet(root / "data/processed/samples.parquet")


#: name -> (params edit or None, other change to the copy or None, extra environment)
TRAIN_FAULTS = {
    "inf inputs": (None, _infinite_spectra_mean, {}),
    "unreachable server": (None, None, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:{port}"}),
    "resume, new learning rate": (lambda p: p["train"].update(resume=True, learning_rate=0.01), None, {}),
    "resume, new hidden_dim": (lambda p: (p["train"].update(resume=True), p["model"].update(hidden_dim=32)), None, {}),
    "resume, new logging only": (lambda p: p["train"].update(resume=True, logging_steps=3), None, {}),
    "resume, labels fixed": (lambda p: p["train"].update(resume=True), _swap_two_training_labels, {}),
}


@pytest.fixture(scope="module")
def train_faults(shared_project, tmp_path_factory):
    base = tmp_path_factory.mktemp("train-faults")
    jobs, roots = [], {}
    for i, (name, (edit, change, env)) in enumerate(TRAIN_FAULTS.items()):
        root = clone(shared_project, base / f"case{i}")
        assert list((root / "checkpoints").glob("checkpoint-*/metallo_fingerprint.json")), "no fingerprinted checkpoint"
        remove(root, "models/model", "models/run.json", "metrics/train.json", "metrics/live")
        if edit:
            edit_params(root, edit)
        if change:
            change(root)
        roots[name] = root
        jobs.append((root, "train", {k: v.format(port=_closed_port()) for k, v in env.items()}))
    started = time.monotonic()
    results = stages_at_once(*jobs)
    return {name: (root, result) for (name, root), result in zip(roots.items(), results)}, time.monotonic() - started


@pytest.mark.slow
def test_training_on_inf_inputs_fails_and_writes_no_model(train_faults):
    root, result = train_faults[0]["inf inputs"]
    message = error_message(result)
    assert "stats.json" in message and "not finite" in message and "models/model" in message
    for name in ("models/model", "models/run.json", "metrics/train.json"):
        assert not (root / name).exists(), name
    assert list((root / "models").glob(".model.tmp-*")) == []
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("metallo")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    assert all(run.info.status != "RUNNING" for run in runs)  # refused before training: no run left open


@pytest.mark.slow
def test_unreachable_tracking_server_costs_one_warning_and_training_goes_on(train_faults):
    root, result = train_faults[0]["unreachable server"]
    assert result.returncode == 0, result.stderr[-5000:]
    assert result.stderr.count("MLflow tracking disabled") == 1, result.stderr[-5000:]
    assert "cannot be reached" in result.stderr
    assert (root / "models/model/model.safetensors").is_file()
    assert json.loads((root / "metrics/train.json").read_text())["steps"] > 0
    assert json.loads((root / "models/run.json").read_text())["run_id"] is None
    assert train_faults[1] < 600  # all five at once; MLflow's default retries alone took ~4 minutes


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,named",
    [
        ("resume, new learning rate", "train.learning_rate: 0.002 -> 0.01"),
        ("resume, new hidden_dim", "model.hidden_dim: 16 -> 32"),
    ],
)
def test_resume_with_changed_params_is_refused(train_faults, name, named):
    root, result = train_faults[0][name]
    message = error_message(result)
    assert named in message and "checkpoint-" in message
    assert "Delete checkpoints/" in message and "train.resume: false" in message
    assert not (root / "models/model").exists() and not (root / "metrics/train.json").exists()
    assert list((root / "checkpoints").glob("checkpoint-*")), "a refusal must not delete the checkpoints"


@pytest.mark.slow
def test_resume_after_labels_were_fixed_is_refused(train_faults, shared_project):
    root, result = train_faults[0]["resume, labels fixed"]
    for name in ("data/split/split.parquet", "data/split/stats.json"):
        assert (root / name).read_bytes() == (shared_project / name).read_bytes(), name
    message = error_message(result)
    assert "data/processed/samples.parquet changed" in message and "checkpoint-" in message
    assert "train.resume: false" in message
    assert not (root / "models/model").exists()
    assert list((root / "checkpoints").glob("checkpoint-*")), "a refusal must not delete the checkpoints"


@pytest.mark.slow
def test_resume_with_only_a_logging_change_continues_the_same_training(train_faults, shared_project):
    root, result = train_faults[0]["resume, new logging only"]
    assert result.returncode == 0, result.stderr[-5000:]
    assert "train: resuming from checkpoints/checkpoint-" in result.stdout
    got = json.loads((root / "metrics/train.json").read_text())
    want = json.loads((shared_project / "metrics/train.json").read_text())
    # the finished training's last checkpoint: the same model, nothing retrained (metrics to float precision:
    # this run had one thread, the shared one the default)
    assert got.pop("val") == pytest.approx(want.pop("val"), rel=1e-5)
    assert got == want
    assert (root / "models/model/model.safetensors").read_bytes() == (
        shared_project / "models/model/model.safetensors"
    ).read_bytes()
