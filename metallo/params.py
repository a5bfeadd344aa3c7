"""Reading ``params.yaml``: one section per stage, unknown keys refused with a suggestion.

A params file holds plain values (numbers, strings, lists, mappings). Before anything is built from it,
:func:`load_params` refuses a file larger than :data:`MAX_PARAMS_BYTES`, YAML aliases (``*name``: a few
lines of them expand to gigabytes, the "billion laughs") and tags such as ``!!python/object``, each with a
message naming the file and the line. :func:`bounded_str` formats a value for a log or a message without
ever building more than its limit.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import yaml

from metallo.errors import MetalloError, did_you_mean

PARAMS_FILE = "params.yaml"
#: The largest params file Metallo reads (the project's is about 5 KB).
MAX_PARAMS_BYTES = 1 << 20
#: MLflow's limit on a param value, and the default bound of :func:`bounded_str`.
MAX_VALUE_CHARS = 6000


class _AliasFound(yaml.MarkedYAMLError):
    """A YAML alias in a params file (refused before it is expanded)."""


class _PlainLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that stops at the first alias, before composing (expanding) it."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasFound(problem=f"alias '*{event.anchor}'", problem_mark=event.start_mark)
        return super().compose_node(parent, index)


def _parse(path: Path) -> Any:
    """The YAML document in ``path``, read with :class:`_PlainLoader`; every problem as a :class:`MetalloError`."""
    size = path.stat().st_size
    if size > MAX_PARAMS_BYTES:
        raise MetalloError(
            f"{path} is {size:,} bytes, larger than the {MAX_PARAMS_BYTES:,} a params file may be. "
            "Params are a few settings per stage; keep data and long lists in files of their own."
        )
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_PlainLoader)  # noqa: S506 - a SafeLoader subclass
    except _AliasFound as err:
        raise MetalloError(
            f"{path}, line {err.problem_mark.line + 1}: YAML {err.problem} refused. Metallo reads no aliases in "
            "params files (a few lines of them can expand to gigabytes, and DVC expands them too). Write the "
            "value out where the alias is."
        ) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f", line {mark.line + 1}" if mark else ""
        raise MetalloError(
            f"{path}{where}: {err.problem or err.context}. A params file holds plain values (numbers, strings, "
            "lists, mappings): remove the tag or fix the YAML syntax there."
        ) from None
    except RecursionError:
        raise MetalloError(
            f"{path} nests its values too deeply to be a params file; fix it or restore it from git."
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise MetalloError(f"{path} is not a readable YAML file ({err}); fix it or restore it from git.") from None


def load_params(path: str | os.PathLike = PARAMS_FILE) -> dict[str, Any]:
    """Load the whole params file as a dict of sections (checked as the module docstring says)."""
    path = Path(path)
    if not path.is_file():
        raise MetalloError(
            f"{path} not found. Run Metallo from the project root (the folder holding dvc.yaml), or pass --params PATH."
        )
    params = _parse(path) or {}
    if not isinstance(params, dict):
        raise MetalloError(f"{path} must hold a mapping of sections (data:, ingest:, ...).")
    return params


def section(params: Mapping[str, Any], name: str, allowed: Iterable[str] | None = None) -> dict[str, Any]:
    """Return ``params[name]`` after checking that every key in it is one of ``allowed``."""
    if name not in params:
        raise MetalloError(f"params.yaml has no '{name}:' section; add it (see the project's params.yaml).")
    values = dict(params[name] or {})
    if allowed is not None:
        check_keys(name, values, allowed)
    return values


@dataclasses.dataclass(frozen=True)
class Section:
    """A params section as a frozen dataclass, built once per stage with :meth:`from_params`.

    A subclass names its section (``NAME``) and declares its keys as fields: a field with a default is an
    optional key (the default lives here and nowhere else), one without is required. Unknown keys are refused
    as :func:`section` refuses them; :meth:`check` (called after construction) converts and checks values.
    """

    NAME: ClassVar[str]

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        values = section(params, cls.NAME, cls.keys())
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [key for key in required if key not in values]
        if missing:
            raise MetalloError(
                f"params.yaml's '{cls.NAME}:' section lacks {', '.join(missing)}; "
                "add it (see the project's params.yaml)."
            )
        built = cls(**values)
        built.check()
        return built

    def check(self) -> None:
        """Convert and check the values (``object.__setattr__`` on this frozen instance); nothing by default."""

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)


def check_keys(where: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """Refuse keys that are not in ``allowed``, naming the closest valid ones."""
    allowed = list(allowed)
    unknown = [key for key in given if key not in allowed]
    if unknown:
        lines = [f"  {where}.{key}:{did_you_mean(key, allowed)}" for key in unknown]
        raise MetalloError(
            f"unknown parameter(s) in '{where}':\n"
            + "\n".join(lines)
            + f"\nValid keys: {', '.join(sorted(allowed))}. Fix params.yaml or the -S option."
        )


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested sections to dotted keys: ``{'model': {'hidden_dim': 8}}`` -> ``{'model.hidden_dim': 8}``."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _pieces(value: Any) -> Iterator[str]:
    """The text of ``str(value)`` for lists, tuples and mappings (``repr`` of each item), piece by piece."""
    if isinstance(value, Mapping):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ", " if i else ""
            yield from _pieces(key)
            yield ": "
            yield from _pieces(item)
        yield "}"
    elif isinstance(value, (list, tuple)):
        yield "[" if isinstance(value, list) else "("
        for i, item in enumerate(value):
            yield ", " if i else ""
            yield from _pieces(item)
        yield "]" if isinstance(value, list) else ",)" if len(value) == 1 else ")"
    else:
        yield repr(value[: MAX_VALUE_CHARS + 1] if isinstance(value, str) else value)


def bounded_str(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """``str(value)`` cut to ``limit`` characters, without building the whole text of a huge value first.

    Plain values come out exactly as ``str`` gives them; lists, tuples and mappings are formatted piece by
    piece until ``limit`` characters are there, so a list of a million items costs what its first few do.
    """
    if not isinstance(value, (Mapping, list, tuple)):
        return (value if isinstance(value, str) else str(value))[:limit]
    text, size = [], 0
    for piece in _pieces(value):
        text.append(piece)
        size += len(piece)
        if size >= limit:
            break
    return "".join(text)[:limit]
