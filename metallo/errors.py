"""User-facing errors.

Anything a user can fix (a bad param, a missing folder, a malformed manifest) raises
:class:`MetalloError` with a message that says what is wrong and what to do. Entry points
(stage scripts, the CLI) print that message without a traceback and exit non-zero.
"""

from __future__ import annotations

import contextlib
import difflib
import sys
from collections.abc import Iterable, Iterator


class MetalloError(Exception):
    """An error the user can act on; its message is shown as is."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean: a, b?' for the closest valid names, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f" Did you mean: {', '.join(close)}?" if close else ""


@contextlib.contextmanager
def exit_on_error() -> Iterator[None]:
    """Turn a :class:`MetalloError` into a readable message and exit status 1."""
    try:
        yield
    except MetalloError as err:
        print(f"\nmetallo: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
