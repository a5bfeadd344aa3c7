"""The checks every sample file passes before it is read, and the error a bad file raises."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class SampleError(ValueError):
    """One sample's file is unusable; the message is the reason shown to the user."""


def special_kind(mode: int) -> str | None:
    """What a file of ``mode`` is when it is not a regular file (``a FIFO (named pipe)``, ...); None for one."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return None


def _check_file(path: Path, what: str) -> None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SampleError(f"{what} file not found: {path.name}") from None
    except OSError as err:
        if err.errno == 40:  # ELOOP
            raise SampleError(f"{what} path {path.name} is a symbolic-link loop") from None
        raise SampleError(f"{what} file cannot be read: {path.name} ({err.strerror or err})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = special_kind(info.st_mode) or "a special file"
        raise SampleError(f"{what} path is not a regular file ({kind}): {path.name}")
    if info.st_size == 0:
        raise SampleError(f"{what} file is empty (0 bytes): {path.name}")
