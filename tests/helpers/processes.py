"""Waiting with a bound, and finding the processes a test left running."""

from __future__ import annotations

import time
from pathlib import Path

import psutil


def processes_in(folder: Path) -> list[psutil.Process]:
    """Live processes whose working directory is inside ``folder`` (catches daemonised queue workers)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and Path(proc.cwd()).is_relative_to(folder):
                found.append(proc)
        except (psutil.Error, OSError, ValueError):
            continue
    return found


def wait_until(condition, timeout: float, poll: float = 0.5):
    """Call ``condition`` until it returns something true or ``timeout`` seconds have passed; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(poll)


def wait_for(condition, timeout: float, what: str, poll: float = 0.05):
    """Call ``condition`` until it returns something true (returned); fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(poll)
