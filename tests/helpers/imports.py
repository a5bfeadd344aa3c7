"""Static import graph of the project's own code (``metallo`` and ``stages``), read with :mod:`ast`.

Nothing is imported: each module's source is parsed, and every ``import`` / ``from … import`` of a project
module is recorded with where it sits. A *module-level* import runs when the module is imported (also inside
a class body, a ``try`` or an ``if``, but not under ``if TYPE_CHECKING:``); a *function-level* import runs
only when its function is called. Importing ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``, and
``from a.b import c`` imports the submodule ``a.b.c`` when there is one: both are part of the graph.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("metallo", "stages")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported project module
    line: int
    function_level: bool
    comment: str  # the source line's text (its ``# lazy: …`` reason, if any)


@cache
def modules() -> dict[str, Path]:
    """Every project module name → its file (``metallo.data`` → ``metallo/data/__init__.py``)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """Project modules that ``node`` (inside ``module``) names: ``from a.b import c`` names ``a.b.c`` when that
    is a module, else ``a.b``; ``import a.b`` names ``a.b``. (Their parent packages run too: see
    :func:`module_level_closure`.)"""
    known = modules()
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module if known[module].name == "__init__.py" else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    return list(dict.fromkeys(name for name in names if name.split(".")[0] in PACKAGES and name in known))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


@cache
def imports_of(module: str) -> tuple[Import, ...]:
    """Every project import written in ``module``, module-level and function-level."""
    path = modules()[module]
    source = path.read_text()
    lines = source.splitlines()
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other, in_function)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                for target in _resolve(module, child):
                    text = lines[child.lineno - 1]
                    found.append(Import(module, target, child.lineno, in_function, text))
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(ast.parse(source, filename=str(path)), in_function=False)
    return tuple(found)


def module_level_closure(start: str) -> set[str]:
    """``start`` and every project module its import runs, transitively (parent packages included)."""
    seen: set[str] = set()
    todo = [parent for parent in _with_parents(start) if parent in modules()]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for imp in imports_of(name):
            if not imp.function_level:
                todo += [parent for parent in _with_parents(imp.target) if parent in modules()]
    return seen


def relative_path(module: str) -> str:
    return modules()[module].relative_to(ROOT).as_posix()
