"""Ordered parallel map with a progress bar, used by the data stages.

Worker processes die with the process that started them: each worker asks the Linux kernel
for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``) and, on every platform, a
watchdog thread exits the worker within :data:`PARENT_POLL_S` once its parent is gone. So a
``kill -9`` of a stage never leaves workers blocked on the pool's pipes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")


#: Seconds between a worker's checks that its parent still runs.
PARENT_POLL_S = 0.5
PR_SET_PDEATHSIG = 1


def _parent_gone(parent: int, direct: bool) -> bool:
    if direct and os.getppid() != parent:  # re-parented: the parent died
        return True
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def die_with_parent(parent: int) -> None:
    """Pool initializer: end this worker when ``parent`` (the process that started the pool) dies."""
    # With fork the pool's process is our parent; with forkserver it is not, and only its PID is watched.
    direct = os.getppid() == parent
    if direct and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the watchdog below still runs
            pass
    if _parent_gone(parent, direct):  # died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while not _parent_gone(parent, direct):
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="metallo-parent-watchdog", daemon=True).start()


def resolve_workers(workers: int | None) -> int:
    """``None`` or ``0`` means every core this process may use."""
    if workers and workers > 0:
        return workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str, unit: str = "sample", enabled: bool | None = None
) -> Iterator[T]:
    """A tqdm bar with counts and rate; silent when stderr is not a terminal (CI, DVC logs)."""
    disable = not sys.stderr.isatty() if enabled is None else not enabled
    return iter(tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True))


def map_ordered(
    fn: Callable[[T], R],
    items: list[T],
    *,
    workers: int | None = None,
    desc: str,
    unit: str = "sample",
    chunksize: int = 8,
    show_progress: bool | None = None,
) -> Iterator[R]:
    """Apply ``fn`` to ``items`` in worker processes, yielding results in input order."""
    n_workers = min(resolve_workers(workers), max(1, len(items)))
    if n_workers == 1:
        yield from progress(map(fn, items), total=len(items), desc=desc, unit=unit, enabled=show_progress)
        return
    with ProcessPoolExecutor(max_workers=n_workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        results = pool.map(fn, items, chunksize=chunksize)
        yield from progress(results, total=len(items), desc=desc, unit=unit, enabled=show_progress)
