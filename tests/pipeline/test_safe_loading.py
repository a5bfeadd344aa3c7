"""Safe loading: no pickles, no remote code, weights-only torch.load, the PIL bomb limit, a localhost-only UI.

Real git, real DVC CLI, real MLflow SQLite stores, real subprocesses; nothing is mocked. The slow tests
work on copies of the shared tiny project (``shared``, tests/pipeline/conftest.py).
"""

from __future__ import annotations

import ast
import pickle
import shutil
import sys
from pathlib import Path

import pytest

from metallo.errors import MetalloError
from tests.helpers.project import REPO

SOURCE = REPO / "metallo"


class _CreatesFileWhenUnpickled:
    """Unpickling this object creates ``marker``: evidence that a loader executed pickle code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


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
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "load"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in modules
    ]


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
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "from_pretrained"
                and not (isinstance(node.func.value, ast.Name) and node.func.value.id in ("MetalloProcessor", "cls"))
            ):
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

    from PIL import Image

    import metallo

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
