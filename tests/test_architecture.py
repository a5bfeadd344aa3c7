"""The import graph of ``metallo`` and ``stages`` flows one way (tests/helpers/imports.py reads it with ast).

:data:`LAYERS` lists the layers from the bottom up; a module may import its own layer and those below, never
one above, at module level or inside a function. No cycle either, counting the imports inside functions: a
function-level import is not a way around a cycle. It is kept only where it keeps ``metallo --help`` or
``import metallo`` fast, and says so on its line (``# lazy: <reason>``).
"""

from __future__ import annotations

import graphlib

import pytest

from tests.helpers.imports import imports_of, modules

#: Bottom up. A module belongs to the layer of the longest prefix that names it (``metallo`` itself, the
#: package's facade, is the top).
LAYERS = (
    ("foundation", ("metallo.errors", "metallo.uris", "metallo.parallel", "metallo.io", "metallo.params",
                    "metallo.layout", "metallo.spectra", "metallo.metrics", "metallo.metric_names", "metallo.pipeline",
                    "metallo.constants")),
    ("data", ("metallo.data",)),
    ("tracking and reports", ("metallo.tracking", "metallo.uncertainty", "metallo.figures", "metallo.model_card")),
    ("processing", ("metallo.processing", "metallo.augmentation")),
    ("models", ("metallo.models",)),
    ("prediction", ("metallo.prediction", "metallo.hub")),
    ("training", ("metallo.training",)),
    ("evaluation", ("metallo.evaluation", "metallo.baselines")),
    ("applications", ("metallo.compare", "metallo.project", "metallo.ci", "metallo.bench", "metallo.team")),
    ("entry points", ("metallo.cli", "stages", "metallo")),
)  # fmt: skip

LAZY = "# lazy:"


def layer_of(module: str) -> int:
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or (prefix != "metallo" and module.startswith(prefix + "."))
    ]
    assert matches, f"{module} is in no layer of tests/test_architecture.py's LAYERS"
    return max(matches)[1]


def all_imports():
    return [imp for module in modules() for imp in imports_of(module)]


def test_every_module_has_a_layer():
    for module in modules():
        layer_of(module)


def test_no_import_goes_up_a_layer():
    upward = [
        f"{imp.source}:{imp.line} ({LAYERS[layer_of(imp.source)][0]}) imports {imp.target} "
        f"({LAYERS[layer_of(imp.target)][0]})"
        for imp in all_imports()
        if layer_of(imp.target) > layer_of(imp.source)
    ]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_no_import_cycle():
    graph: dict[str, set[str]] = {module: set() for module in modules()}
    for imp in all_imports():
        if imp.target != imp.source:
            graph[imp.source].add(imp.target)
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


def test_function_level_imports_say_why_they_are_lazy():
    unexplained = [
        f"{imp.source}:{imp.line}" for imp in all_imports() if imp.function_level and LAZY not in imp.comment
    ]
    assert not unexplained, f"function-level imports without a `{LAZY} <reason>` comment: {', '.join(unexplained)}"
