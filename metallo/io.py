"""Small file helpers shared by every stage: atomic writes, hashing, confined paths.

Every output is written under a temporary name in its destination folder and moved into
place with :func:`os.replace`, so an interrupted stage never leaves a half-written file
that DVC or a later stage could take as complete.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from metallo.errors import MetalloError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success move it onto ``path``.

    Works for files and folders. On error the temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    remove_path(tmp)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        remove_path(tmp)


def remove_path(path: Path) -> None:
    """Remove a file, a link or a whole folder; nothing when ``path`` does not exist."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_file(path: str | os.PathLike, writer: Callable[[BinaryIO], Any]) -> None:
    """Write ``path`` atomically with ``writer(binary file)``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        writer(fh)


def write_rows(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Write a CSV file of already formatted cells atomically (header ``columns``, ``\\n`` line ends)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (key order kept, so output is deterministic)."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def open_npy(path: str | os.PathLike, remedy: str = "Run `dvc repro convert` again.") -> np.ndarray:
    """A processed ``.npy`` array, memory-mapped read-only (never unpickled); a truncated or corrupt
    file is a :class:`~metallo.errors.MetalloError` naming it and ``remedy``, not a traceback."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise MetalloError(f"{path} is truncated or corrupt ({type(err).__name__}: {err}). {remedy}") from None


def write_parquet(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Write a Parquet table without the pandas index and without timestamps."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")


#: First characters that make a spreadsheet read a cell as a formula (``=HYPERLINK(...)``, ``@SUM``, ...).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: A plain ASCII decimal or scientific number (no digit separators, no other scripts): ``-3e-2``, ``.5``.
PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def neutralise_formula(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, prefixed with ``'`` (shown, never evaluated);
    plain numbers such as ``-3.5`` and everything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def write_csv(path: str | os.PathLike, frame: pd.DataFrame, **kwargs: Any) -> None:
    """Write a CSV without the index; text cells that start like a formula are neutralised
    (:func:`neutralise_formula`), since users open these files in spreadsheets."""
    text = [c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])]
    if text:
        frame = frame.assign(**{str(c): frame[c].map(neutralise_formula) for c in text})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n", **kwargs)


#: errno values of a full disk or an exhausted quota, and how libraries that wrap them (safetensors) print them.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_TEXTS = ("No space left on device", "StorageFull", "Disk quota exceeded")


def disk_full(err: BaseException | None) -> bool:
    """Whether ``err``, or an error it was raised from or while handling, is a full disk."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            return True
        if any(text in str(err) for text in DISK_FULL_TEXTS):
            return True
        err = err.__cause__ or err.__context__
    return False


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class PathEscapeError(ValueError):
    """A manifest path resolves outside the raw data folder."""


def resolve_inside(root: str | os.PathLike, relative: str, *, root_resolved: bool = False) -> Path:
    """Resolve ``relative`` against ``root``, refusing anything that ends up outside it.

    Symbolic links are followed before the check, so a link pointing out of the folder is
    refused as well as ``../`` paths and absolute paths. ``root_resolved``: ``root`` is already
    a resolved absolute path (a caller checking a million rows resolves it once). String
    operations, not pathlib: this runs twice per manifest row.
    """
    root = os.fspath(root) if root_resolved else os.path.realpath(root)
    if not relative or os.path.isabs(relative):
        raise PathEscapeError(f"path {relative!r} must be relative to the manifest's folder")
    target = os.path.realpath(os.path.join(root, relative))
    if target != root and not target.startswith(root.rstrip(os.sep) + os.sep):
        raise PathEscapeError(f"path {relative!r} resolves outside the raw data folder ({target})")
    return Path(target)
