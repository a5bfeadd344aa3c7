"""Hostile params files: a YAML alias bomb, a Python object tag, an oversized file; huge values in messages.

Real files and a real subprocess (``python -m metallo.project init``); nothing is mocked.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import pytest
import yaml

from metallo.errors import MetalloError
from metallo.params import MAX_PARAMS_BYTES, bounded_str, load_params
from tests.helpers.project import REPO, project_env

#: Nine levels of nine aliases each: 9**9 (387 million) strings once expanded, in 400 bytes of YAML.
ALIAS_BOMB = "unused:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9)
)


def _params_with(tmp_path, extra: str):
    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text() + "\n" + extra)
    return path


def test_an_alias_bomb_under_an_unused_key_is_refused_before_it_expands(tmp_path):
    path = _params_with(tmp_path, ALIAS_BOMB)
    tracemalloc.start()
    try:
        with pytest.raises(MetalloError) as err:
            load_params(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB while refusing it"
    message = str(err.value)
    assert str(path) in message and "alias" in message and "*l0" in message and "line" in message


def test_a_single_alias_is_refused_too_with_what_to_write_instead(tmp_path):
    path = _params_with(tmp_path, "shared: &size 64\nother:\n  size: *size\n")
    with pytest.raises(MetalloError, match="Write the value out"):
        load_params(path)


def test_a_python_object_tag_is_a_clear_error(tmp_path):
    path = _params_with(tmp_path, "evil: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(MetalloError) as err:
        load_params(path)
    message = str(err.value)
    assert str(path) in message and "python/object/apply:os.system" in message and "line" in message


def test_values_nested_too_deeply_are_a_clear_error(tmp_path):
    path = _params_with(tmp_path, "deep: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(MetalloError, match="nests its values too deeply"):
        load_params(path)


def test_an_oversized_params_file_is_refused_without_reading_it(tmp_path):
    path = _params_with(tmp_path, "# " + "x" * MAX_PARAMS_BYTES + "\n")
    with pytest.raises(MetalloError, match="larger than"):
        load_params(path)


def test_project_init_checks_params_yaml_first_and_exits_without_a_traceback(tmp_path):
    _params_with(tmp_path, ALIAS_BOMB)
    result = subprocess.run(
        [sys.executable, "-m", "metallo.project", "init"],
        cwd=tmp_path,
        env={**project_env(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "alias" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / ".git").exists() and not (tmp_path / ".dvc").exists()


def test_values_are_truncated_while_formatting_not_after():
    normal = {"a": [1, 2.5, "x"], "b": None, "c": "text", "d": True, "e": [[6, 4]]}
    for value in normal.values():
        assert bounded_str(value) == str(value)
    assert bounded_str("y" * 10_000) == "y" * 6000
    huge = [["lol"] * 1000] * 1000  # a million strings: str() would build 7 MB
    tracemalloc.start()
    try:
        shown = bounded_str(huge, limit=200)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(shown) <= 200 and shown.startswith("[['lol', 'lol'")
    assert peak < 1 * 2**20, f"{peak / 2**20:.1f} MiB"
    assert yaml.safe_load("a: 1")  # the loader the tests compare against still works


@pytest.mark.parametrize(
    ("override", "added", "deleted"),
    [("model.hidden_dim=256", 1, 1), ("data.wavelengths=[]", 1, 3), ("split.test_slices=['3']", 1, 1)],
)
def test_dvc_exp_run_set_rewrites_only_the_changed_lines(tmp_path, override, added, deleted):
    """DVC rewrites params.yaml with its own YAML dumper on `dvc exp run -S`: the committed file is written in
    that style, so the rewrite changes the value's lines only (and stays valid YAML). Real git and DVC CLI."""
    from tests.helpers.project import run

    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  noop:\n    cmd: python -c pass\n    params:\n      - model.hidden_dim\n      - data\n"
        "      - split\n"
    )
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "config", "user.email", "test@example.com"],
        ["git", "config", "user.name", "Metallo tests"],
        ["dvc", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "params"],
        ["dvc", "exp", "run", "-S", override],
    ):
        run(cmd, tmp_path)
    diff = run(["git", "diff", "--numstat", "params.yaml"], tmp_path).stdout.split()
    assert diff[:2] == [str(added), str(deleted)], run(["git", "diff", "params.yaml"], tmp_path).stdout
    yaml.safe_load((tmp_path / "params.yaml").read_text())  # still valid YAML


@pytest.mark.slow
def test_mistyped_raw_dir_is_explained_and_keeps_the_ingest_report(tmp_path):
    """Real DVC on the tiny project: `dvc repro` with a raw folder that does not exist fails (DVC's own
    `[Errno 2]`) without deleting metrics/ingest.json and rejected.csv (persist outputs); `make repro`'s first
    step says what to fix, without a traceback."""
    from tests.helpers.project import make_project, run

    root = make_project(tmp_path / "project")
    run(["dvc", "repro", "ingest"], root)
    report = (root / "metrics/ingest.json").read_text()
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["ingest"]["raw_dir"] = "data/synthetc"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    failed = run(["dvc", "repro", "ingest"], root, check=False)
    assert failed.returncode != 0
    assert (root / "metrics/ingest.json").read_text() == report and (root / "data/interim/rejected.csv").is_file()
    init = run([sys.executable, "-m", "metallo.project", "init"], root, check=False, PYTHONPATH=str(REPO))
    assert init.returncode == 1 and "Traceback" not in init.stderr
    assert "ingest.raw_dir is 'data/synthetc', which does not exist" in init.stderr
