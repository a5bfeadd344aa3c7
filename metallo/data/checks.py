"""The checks ingest runs on one manifest row and on the raw folder as a whole.

A row's problems are collected as reasons (a row is never rejected at its first problem): its ids,
its ``dos`` value and its two files, which are read in full with :mod:`metallo.data.readers`. A raw
folder holding a FIFO, socket, device file or symbolic-link loop is refused before any row is read.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
import unicodedata
from pathlib import Path

import numpy as np

from metallo.data.readers import SampleError, read_image, read_spectra
from metallo.data.readers.files import special_kind
from metallo.errors import MetalloError
from metallo.io import PLAIN_NUMBER, PathEscapeError, resolve_inside, sha256_file

#: A dos value: plain ASCII decimal or scientific notation (no digit separators, no other scripts).
NUMBER = PLAIN_NUMBER
NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.ASCII | re.IGNORECASE)
#: Largest accepted |dos|. Training and evaluation hold labels, their squares and sums of squares in
#: float32 (largest 3.4e38): with |dos| <= 1e15 a square is <= 1e30 and a sum over ten million rows
#: <= 1e37, still finite. A 1e39 label became inf and ended training in a traceback.
MAX_LABEL_ABS = 1e15
#: Smallest accepted non-zero |dos|: float32's smallest normal number. Below it a label becomes a
#: float32 subnormal (precision lost) or 0 (``1e-400`` is already 0 in float64).
MIN_LABEL_ABS = float(np.finfo(np.float32).tiny)


# ----------------------------------------------------------------------------------------------
# One row
# ----------------------------------------------------------------------------------------------


#: Unicode categories refused in ids: control (NUL, tab, newline, ESC of terminal escape sequences),
#: format (bidi overrides such as U+202E, zero-width characters), line/paragraph separators, surrogates.
REFUSED_ID_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Cs")


def _clean_id(value: str, column: str, reasons: list[str]) -> str:
    """Trim an id; reject an empty one or one holding control or format characters (NUL, ESC, bidi, ...)."""
    value = value.strip()
    if not value:
        reasons.append(f"{column} is empty")
        return value
    bad = sorted({f"U+{ord(ch):04X}" for ch in value if unicodedata.category(ch) in REFUSED_ID_CATEGORIES})
    if bad:
        reasons.append(
            f"{column} {value!r} contains format or control characters ({', '.join(bad[:5])}: NUL, tab, newline, "
            "terminal escapes, bidi overrides or zero-width characters, which can make an id print as another); "
            "use printable text"
        )
    return value


def parse_dos(text: str) -> tuple[float, str | None]:
    """``(value, problem)`` for a dos field: plain ASCII decimal or scientific notation only."""
    text = text.strip()
    if NON_FINITE.fullmatch(text):
        return math.nan, f"dos is not finite ({text})"
    if not NUMBER.fullmatch(text):
        return math.nan, (
            f"dos {text!r} is not a number (use plain decimal or scientific notation such as "
            "1.25 or -3e-2, without digit separators)"
        )
    value = float(text)
    if not math.isfinite(value):
        return math.nan, f"dos is not finite ({text})"
    if abs(value) > MAX_LABEL_ABS:
        return math.nan, (
            f"dos {text} is outside the accepted range of +-{MAX_LABEL_ABS:g} (float32 training would overflow); "
            "rescale the labels (e.g. another unit)"
        )
    mantissa = re.split("[eE]", text)[0]
    if abs(value) < MIN_LABEL_ABS and re.search("[1-9]", mantissa):
        return math.nan, (
            f"dos {text} is too close to zero for float32 (it would become 0 or lose precision; smallest "
            f"accepted non-zero magnitude {MIN_LABEL_ABS:.3g}); write 0 or rescale the labels"
        )
    return value + 0.0, None  # + 0.0: -0.0 becomes 0.0


def _check_dos(text: str, require_label: bool, reasons: list[str]) -> float:
    """The row's dos value (NaN when missing or bad, with the reason added)."""
    text = text.strip()
    if not text:
        if require_label:
            reasons.append("dos is missing")
        return math.nan
    value, problem = parse_dos(text)
    if problem:
        reasons.append(problem)
    return value


def _check_file(column: str, relative: str, root: str, spectra_shape: tuple[int, int], out: dict) -> str | None:
    """Read the row's ``image`` or ``spectra`` file in full; record its facts in ``out``; the problem, if any."""
    if not relative:
        return f"{column} path is empty"
    if "\0" in relative:  # the OS cannot open such a path (os functions raise ValueError)
        return f"{column} path {relative!r} contains a NUL character"
    try:
        try:
            path = resolve_inside(root, relative, root_resolved=True)
        except RuntimeError as err:  # Path.resolve on Python < 3.13: a symbolic-link loop
            return f"{column} {relative!r} cannot be resolved (symbolic-link loop: {err})"
        if column == "image":
            image = read_image(path)
            out.update(
                width=image.width, height=image.height, image_bit_depth=image.bits, image_max_value=image.max_value
            )
        else:
            read_spectra(path, spectra_shape)
        out[f"{column}_sha256"] = sha256_file(path)
    except (SampleError, PathEscapeError) as err:
        return f"{column} {relative!r}: {err}" if isinstance(err, PathEscapeError) else str(err)
    except OSError as err:  # unreadable: permissions, a folder named like a file, ...
        return f"{column} {relative!r} cannot be read ({err.strerror or err})"
    return None


def check_row(task: tuple[int, dict[str, str], str, tuple[int, int], bool]) -> dict:
    """Check one manifest row (runs in a worker process): its cleaned values, file facts and ``reasons``.

    ``root`` is the raw folder, already resolved (:func:`os.path.realpath`).
    """
    row, record, root, spectra_shape, require_label = task
    reasons: list[str] = []
    out: dict = {"row": row}
    out["sample_id"] = _clean_id(record["sample_id"], "sample_id", reasons)
    out["slice_id"] = _clean_id(record["slice_id"], "slice_id", reasons)
    out["dos"] = _check_dos(record["dos"], require_label, reasons)
    for column in ("image", "spectra"):
        out[column] = record[column].strip()
        problem = _check_file(column, out[column], root, spectra_shape, out)
        if problem:
            reasons.append(problem)
    out["reasons"] = reasons
    return out


# ----------------------------------------------------------------------------------------------
# The raw folder
# ----------------------------------------------------------------------------------------------


def _kind(path: Path) -> tuple[str | None, os.stat_result | None]:
    """``(special kind, stat of the target)`` of ``path``, following symbolic links to their target.

    The kind is None for a regular file, a folder, a dangling link (the row that names it reports
    it) or an entry that cannot be inspected.
    """
    try:
        info = os.stat(path)  # the TARGET: a link to /dev/zero is a device as far as DVC is concerned
    except OSError as err:
        return ("symbolic-link loop" if err.errno == errno.ELOOP else None), None
    kind = special_kind(info.st_mode)
    if kind is None or stat.S_ISDIR(info.st_mode):
        return None, info
    return kind + (" (through a symbolic link)" if path.is_symlink() else ""), info


def special_files(folder: str | os.PathLike, limit: int = 20) -> list[str]:
    """FIFOs, sockets, device files and symbolic-link loops under ``folder``, also behind symbolic links
    (relative paths with their kind, at most ``limit``).

    DVC hashes the whole raw folder before ingest runs, following links, and hangs reading a FIFO
    or a device such as ``/dev/zero``; ingest refuses such a folder. Links to folders are followed
    (each folder once, so a cycle of folder links ends).
    """
    folder = Path(folder)
    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    pending = [folder]
    while pending and len(found) < limit:
        current = pending.pop()
        try:
            info = os.stat(current)
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            names = sorted(os.listdir(current))
        except OSError:
            continue  # unreadable: DVC reports it
        for name in names:
            path = current / name
            kind, target = _kind(path)
            if kind:
                found.append(f"{path.relative_to(folder)} ({kind})")
            elif target is not None and stat.S_ISDIR(target.st_mode):
                pending.append(path)
    return sorted(found)[:limit]


def check_raw_folder(raw_dir: Path) -> None:
    """Refuse a raw folder that holds special files (a missing folder is left to ``read_manifest``)."""
    if not raw_dir.is_dir():
        return  # read_manifest explains
    found = special_files(raw_dir)
    if found:
        listing = "\n".join(f"  {entry}" for entry in found)
        raise MetalloError(
            f"the raw data folder {raw_dir} holds special files that are not data:\n{listing}\n"
            "Remove them (or the links to them) or move them out of the folder; list them all with "
            "`find -L RAW \\( -type p -o -type s -o -type c -o -type b -o -type l \\) -print` (-L looks at "
            "what links point to; link loops show as 'Too many levels of symbolic links'). DVC hashes the "
            "whole folder, following links, before ingest runs, and hangs reading a FIFO or a device such as "
            "/dev/zero or fails on a link loop."
        )
