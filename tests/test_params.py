"""metallo.params.Section: a params section as a frozen dataclass, built once per stage."""

from __future__ import annotations

import dataclasses

import pytest

from metallo.errors import MetalloError
from metallo.params import Section


@dataclasses.dataclass(frozen=True)
class Example(Section):
    NAME = "example"
    size: int
    name: str = "plain"

    def check(self) -> None:
        self._set("size", int(self.size))


def test_a_section_takes_its_defaults_converts_and_is_frozen():
    built = Example.from_params({"example": {"size": "3"}})
    assert built == Example(size=3, name="plain") and Example.keys() == ("size", "name")
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.size = 4


def test_unknown_and_missing_keys_are_refused_with_the_fix():
    with pytest.raises(MetalloError, match=r"example\.sise:.*Did you mean: size"):
        Example.from_params({"example": {"size": 1, "sise": 2}})
    with pytest.raises(MetalloError, match="'example:' section lacks size"):
        Example.from_params({"example": {"name": "x"}})
    with pytest.raises(MetalloError, match="no 'example:' section"):
        Example.from_params({})
