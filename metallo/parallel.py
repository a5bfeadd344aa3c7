"""Ordered parallel map with a progress bar, used by the data stages.

Worker processes die with the process that started them: each worker asks the Linux kernel
for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``) and, on every platform, a
watchdog thread exits the worker within :data:`PARENT_POLL_S` once its parent is gone. So a
``kill -9`` of a stage never leaves workers blocked on the pool's pipes.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
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


def available_memory() -> int | None:
    """Bytes this process can still allocate: the smaller of the system's available memory and
    the room left under a cgroup (container) limit; None when neither can be read."""
    import psutil

    limits = []
    try:
        limits.append(int(psutil.virtual_memory().available))
    except (OSError, RuntimeError):  # pragma: no cover - psutil without /proc
        pass
    cgroup = Path("/sys/fs/cgroup")
    try:
        maximum = (cgroup / "memory.max").read_text().strip()
        if maximum != "max":
            limits.append(int(maximum) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(0, min(limits)) if limits else None


def resolve_workers(workers: int | None, memory_per_worker: int | None = None) -> int:
    """``None`` or ``0`` means every core this process may use; at least 1.

    With ``memory_per_worker`` (bytes one worker may need at its peak) the number is also capped so
    that the workers fit in :func:`available_memory`: a few small files that decode to hundreds of
    MB each must not make every core's worker decode one at the same time.
    """
    if workers and workers > 0:
        count = workers
    else:
        try:
            count = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - non-Linux
            count = os.cpu_count() or 1
    if memory_per_worker:
        free = available_memory()
        if free is not None:
            count = min(count, max(1, free // int(memory_per_worker)))
    return count


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str, unit: str = "sample", enabled: bool | None = None
) -> Iterator[T]:
    """A tqdm bar with counts and rate; silent when stderr is not a terminal (CI, DVC logs)."""
    disable = not sys.stderr.isatty() if enabled is None else not enabled
    return iter(tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True))


def map_ordered(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int | None = None,
    desc: str,
    unit: str = "sample",
    chunksize: int = 8,
    show_progress: bool | None = None,
    memory_per_worker: int | None = None,
    total: int | None = None,
    batch: int = 10_000,
) -> Iterator[R]:
    """Apply ``fn`` to ``items`` in worker processes, yielding results in input order.

    ``items`` may be a generator (give ``total`` for the progress bar): it is consumed ``batch``
    items at a time, so a million tasks are never all built, pickled and queued at once.
    ``memory_per_worker`` caps the pool by the memory available (see :func:`resolve_workers`).
    """
    if total is None:
        items = list(items)
        total = len(items)
    n_workers = min(resolve_workers(workers, memory_per_worker), max(1, total))
    if n_workers == 1:
        yield from progress(map(fn, items), total=total, desc=desc, unit=unit, enabled=show_progress)
        return
    with ProcessPoolExecutor(max_workers=n_workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:

        def results() -> Iterator[R]:
            iterator = iter(items)
            while block := list(itertools.islice(iterator, batch)):
                yield from pool.map(fn, block, chunksize=chunksize)

        yield from progress(results(), total=total, desc=desc, unit=unit, enabled=show_progress)
