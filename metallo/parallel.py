"""Ordered parallel map with a progress bar, used by the data stages."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")


def resolve_workers(workers: int | None) -> int:
    """``None`` or ``0`` means every core this process may use."""
    if workers and workers > 0:
        return workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str, unit: str = "sample",
             enabled: bool | None = None) -> Iterator[T]:
    """A tqdm bar with counts and rate; silent when stderr is not a terminal (CI, DVC logs)."""
    disable = not sys.stderr.isatty() if enabled is None else not enabled
    return iter(tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True))


def map_ordered(fn: Callable[[T], R], items: list[T], *, workers: int | None = None, desc: str,
                unit: str = "sample", chunksize: int = 8, show_progress: bool | None = None) -> Iterator[R]:
    """Apply ``fn`` to ``items`` in worker processes, yielding results in input order."""
    n_workers = min(resolve_workers(workers), max(1, len(items)))
    if n_workers == 1:
        yield from progress(map(fn, items), total=len(items), desc=desc, unit=unit, enabled=show_progress)
        return
    with ProcessPoolExecutor(max_workers=n_workers) as pool:
        results = pool.map(fn, items, chunksize=chunksize)
        yield from progress(results, total=len(items), desc=desc, unit=unit, enabled=show_progress)
