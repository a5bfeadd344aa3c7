"""Ingest: validate a raw manifest row by row and account for every row.

Every row of ``manifest.csv`` ends up in exactly one of two tables: the accepted samples
(with SHA-256 digests of their files, the image size, stored bit depth and largest pixel
value) or the rejected rows with the reason(s). Only a problem with the manifest file as a
whole (missing, not UTF-8, a missing, extra or repeated column, no rows) or with the raw
folder (a FIFO, socket, device file or symbolic-link loop in it) stops ingest before the rows
are checked. Row numbers are the manifest's real line numbers (a quoted field may span lines).
"""

from __future__ import annotations

import csv
import os
import stat
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from metallo.data.checks import check_raw_folder, check_row, parse_dos, special_files  # noqa: F401  (re-exported)
from metallo.data.readers import DECODE_MEMORY_BYTES
from metallo.errors import MetalloError
from metallo.io import write_csv, write_json, write_parquet
from metallo.layout import PATHS, DataShape, Paths
from metallo.parallel import map_ordered
from metallo.params import Section

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("sample_id", "slice_id", "image", "spectra", "dos")
#: The line of manifest.csv that holds data row 0 (line 1 is the header).
FIRST_DATA_LINE = 2
ON_ERROR_CHOICES = ("fail", "skip")


@dataclass(frozen=True)
class IngestParams(Section):
    """The ``ingest:`` section."""

    NAME = "ingest"
    raw_dir: str
    on_error: str

    def check(self) -> None:
        if self.on_error not in ON_ERROR_CHOICES:
            raise MetalloError(f"ingest.on_error must be one of {ON_ERROR_CHOICES}; got {self.on_error!r}.")


#: Columns of samples.parquet, the accepted rows.
ACCEPTED_COLUMNS = (
    "row",
    "sample_id",
    "slice_id",
    "image",
    "spectra",
    "dos",
    "image_sha256",
    "spectra_sha256",
    "width",
    "height",
    "image_bit_depth",
    "image_max_value",
)
#: Columns of rejected.csv.
REJECTED_COLUMNS = ["row", "sample_id", "reason"]
#: Rejected rows listed in an error or on the console; all of them are in rejected.csv.
MAX_LISTED = 20


@dataclass
class IngestResult:
    """Outcome of checking a manifest: every row is in ``accepted`` or ``rejected``."""

    accepted: pd.DataFrame  # ACCEPTED_COLUMNS: manifest columns + row, digests, size, bit depth, max value
    rejected: pd.DataFrame  # row, sample_id, reason
    total: int

    @property
    def counts(self) -> dict[str, int]:
        return {"total": self.total, "accepted": len(self.accepted), "rejected": len(self.rejected)}


def locate_manifest(source: str | os.PathLike) -> tuple[Path, Path]:
    """``(raw_dir, manifest_path)`` for a raw folder (holding manifest.csv) or a manifest file itself."""
    source = Path(source)
    if source.suffix.lower() == ".csv" and not source.is_dir():
        return source.parent, source
    return source, source / MANIFEST


def read_manifest(source: str | os.PathLike, *, require_label: bool = True) -> pd.DataFrame:
    """Read a manifest (``source`` is a raw folder or a .csv) keeping every value a string (``007`` stays ``007``).

    The frame's ``attrs["lines"]`` holds the manifest line on which each data row starts.
    """
    raw_dir, path = locate_manifest(source)
    if not raw_dir.is_dir():
        raise MetalloError(
            f"raw data folder {raw_dir} does not exist. Set ingest.raw_dir in params.yaml to a folder "
            f"holding {MANIFEST} (see docs/data.md), or run `dvc repro synthesize` for the demo data."
        )
    _check_manifest_file(path)
    frame = _read_csv(path)
    header, lines = _header_and_lines(path)
    frame.columns = [str(c).strip() for c in frame.columns]
    _check_columns(path, list(frame.columns) if header is None else header, require_label)
    _check_rows(path, frame)
    if "dos" not in frame.columns:
        frame["dos"] = ""
    if lines is None or len(lines) != len(frame):  # the csv module parsed it differently: count rows instead
        lines = [FIRST_DATA_LINE + i for i in range(len(frame))]
    frame.attrs["lines"] = lines
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    """The manifest as a frame of strings; a file that is not UTF-8, empty or not CSV stops ingest."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8", skipinitialspace=False)
    except UnicodeDecodeError:
        # pandas decodes in chunks, so err.start is relative to a chunk: find the offset in the file
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as whole:
            err = whole
        line = data.count(b"\n", 0, err.start) + 1
        raise MetalloError(
            f"{path} is not UTF-8 text ({err.reason} at byte {err.start}, line {line}); save it as UTF-8."
        ) from None
    except pd.errors.EmptyDataError:
        raise MetalloError(
            f"{path} is empty; it needs a header line {','.join(MANIFEST_COLUMNS)} and one row per sample."
        ) from None
    except pd.errors.ParserError as err:
        raise MetalloError(f"{path} is not a readable CSV file: {err}") from None


def _check_columns(path: Path, header: list[str], require_label: bool) -> None:
    """The header names exactly the manifest columns (``dos`` may be absent when no label is required)."""
    required = [c for c in MANIFEST_COLUMNS if require_label or c != "dos"]
    missing = [c for c in required if c not in header]
    repeated = sorted({c for c in header if header.count(c) > 1})
    extra = [c or "(a column without a name)" for c in dict.fromkeys(header) if c not in MANIFEST_COLUMNS]
    if not (missing or repeated or extra):
        return
    problems = []
    if missing:
        problems.append(f"is missing column(s) {', '.join(missing)}")
    if extra:
        problems.append(f"has unexpected column(s) {', '.join(extra)}")
    if repeated:
        problems.append(f"repeats column(s) {', '.join(repeated)}")
    raise MetalloError(
        f"{path} {'; '.join(problems)}; the header must name exactly the columns "
        f"{','.join(MANIFEST_COLUMNS)} (see docs/data.md). Remove or rename the other columns "
        "(keep notes in a separate file)."
    )


def _check_rows(path: Path, frame: pd.DataFrame) -> None:
    """Data rows have no more fields than the header, and there is at least one."""
    if not isinstance(frame.index, pd.RangeIndex):  # pandas took the first field as an index and shifted the rest
        raise MetalloError(
            f"{path}: data rows have more fields than the header (a trailing comma?); every row needs exactly "
            f"the columns {','.join(MANIFEST_COLUMNS)} (see docs/data.md)."
        )
    if frame.empty:
        raise MetalloError(f"{path} has a header but no rows; add one row per sample.")


def _check_manifest_file(path: Path) -> None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise MetalloError(f"{path} not found: a raw data folder must hold {MANIFEST} (see docs/data.md).") from None
    except OSError as err:
        raise MetalloError(
            f"{path} cannot be opened ({err.strerror or err}); it must be a regular file (a symbolic-link loop?)."
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise MetalloError(
            f"{path} is not a regular file (a folder, FIFO or device?); {MANIFEST} must be a plain "
            "CSV file (see docs/data.md)."
        )


def _header_and_lines(path: Path) -> tuple[list[str] | None, list[int] | None]:
    """The header's column names and the line each data row starts on (a quoted field may span lines).

    Blank and whitespace-only lines are skipped, as pandas skips them. ``(None, None)`` when the
    csv module cannot parse the file.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header, lines, previous = None, [], 0
            for record in reader:
                start, previous = previous + 1, reader.line_num
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue
                if header is None:
                    header = [name.strip() for name in record]
                else:
                    lines.append(start)
    except (csv.Error, UnicodeDecodeError, OSError):
        return None, None
    return header, lines


def validate_manifest(
    raw_dir: str | os.PathLike,
    *,
    spectra_shape: tuple[int, int],
    require_label: bool = True,
    workers: int | None = None,
    show_progress: bool | None = None,
) -> IngestResult:
    """Check every row of a manifest (``raw_dir`` or a .csv in it); never stops at the first bad row.

    Rows are checked as a stream (tasks built and results folded a batch at a time), so memory
    grows with the accepted rows and the rejected rows' reasons, not with every row's full check.
    """
    manifest = read_manifest(raw_dir, require_label=require_label)
    raw_dir, _ = locate_manifest(raw_dir)
    root = os.path.realpath(raw_dir)
    shape = tuple(spectra_shape)
    rows = zip(manifest.attrs["lines"], *(manifest[column] for column in MANIFEST_COLUMNS))
    tasks = ((line, dict(zip(MANIFEST_COLUMNS, values)), root, shape, require_label) for line, *values in rows)
    checks = map_ordered(
        check_row,
        tasks,
        total=len(manifest),
        workers=workers,
        desc="ingest",
        show_progress=show_progress,
        chunksize=64,
        memory_per_worker=DECODE_MEMORY_BYTES,
    )
    accepted, rejected = _sort_rows(checks)
    result = IngestResult(_accepted_frame(accepted), pd.DataFrame(rejected, columns=REJECTED_COLUMNS), len(manifest))
    assert result.counts["accepted"] + result.counts["rejected"] == result.total
    return result


def _sort_rows(checks: Iterable[dict]) -> tuple[list[dict], list[tuple[int, str, str]]]:
    """(accepted rows, rejected rows as (row, sample_id, reason)): a row is rejected for its own
    reasons or a repeated sample_id."""
    first_of: dict[str, tuple[int, str]] = {}  # NFC form -> (row, id as written)
    accepted, rejected = [], []
    for check in checks:
        sample_id = check["sample_id"]
        reasons = check["reasons"]
        if sample_id:
            key = unicodedata.normalize("NFC", sample_id)
            if key in first_of:
                row, written = first_of[key]
                other = (
                    "" if written == sample_id else f" as {written!r}: the same name in another Unicode normalisation"
                )
                reasons.insert(0, f"duplicate sample_id {sample_id!r} (first seen at row {row}{other})")
            else:
                first_of[key] = (check["row"], sample_id)
        if reasons:
            rejected.append((check["row"], sample_id, "; ".join(reasons)))
        else:
            accepted.append({key: check[key] for key in ACCEPTED_COLUMNS})
    return accepted, rejected


def _accepted_frame(accepted: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(accepted, columns=list(ACCEPTED_COLUMNS)).astype(
        {
            "row": "int64",
            "dos": "float64",
            "width": "int64",
            "height": "int64",
            "image_bit_depth": "int64",
            "image_max_value": "int64",
        }
    )


def _printable(text: str) -> str:
    """``text`` as is when every character prints, else its escaped repr (no raw terminal escapes or bidi)."""
    return text if text.isprintable() else repr(text)


def format_rejections(rejected: pd.DataFrame, limit: int | None = MAX_LISTED, where: str | os.PathLike = "") -> str:
    """One line per rejected row, ``row 5 (s004): reason``, for the first ``limit`` rows, then a count
    of the others (``where`` names the file that lists them all). ``limit=None`` lists every row."""
    rows = rejected if limit is None else rejected.head(limit)
    lines = [f"  row {r.row} ({_printable(r.sample_id) or 'no sample_id'}): {r.reason}" for r in rows.itertuples()]
    if limit is not None and len(rejected) > limit:
        listed = f" (every row is listed in {where})" if where else ""
        lines.append(f"  ... and {len(rejected) - limit:,} more{listed}")
    return "\n".join(lines)


def run_ingest(params: dict, paths: Paths = PATHS) -> dict[str, int]:
    """Validate ``ingest.raw_dir``. Reads ``ingest``, ``data``.

    Writes rejected.csv, samples.parquet and metrics/ingest.json. When ingest fails, none of
    them is left from an earlier run (rejected.csv stays when it lists the rows that failed).
    """
    outputs = (paths.rejected, paths.accepted, paths.ingest_metrics)
    written: set[Path] = set()
    try:
        return _run_ingest(params, paths, written)
    except BaseException:
        for path in outputs:  # never leave a previous run's outputs beside this run's
            if path not in written and (path.exists() or path.is_symlink()):
                path.unlink()
        raise


def _run_ingest(params: dict, paths: Paths, written: set[Path]) -> dict[str, int]:
    cfg = IngestParams.from_params(params)
    check_raw_folder(locate_manifest(cfg.raw_dir)[0])
    result = validate_manifest(cfg.raw_dir, spectra_shape=DataShape.from_params(params).spectra)
    write_csv(paths.rejected, result.rejected)
    written.add(paths.rejected)
    counts = result.counts
    print(
        f"ingest: {counts['total']} rows, {counts['accepted']} accepted, {counts['rejected']} rejected "
        f"(details: {paths.rejected})"
    )
    if counts["rejected"]:
        listing = format_rejections(result.rejected, where=paths.rejected)
        if cfg.on_error == "fail":
            raise MetalloError(
                f"{counts['rejected']:,} of {counts['total']:,} manifest rows in {cfg.raw_dir} are invalid:\n"
                f"{listing}\n"
                "Fix these rows, or set ingest.on_error: skip to continue with the valid rows only "
                f"(the rejected ones stay listed in {paths.rejected})."
            )
        print(listing)
    write_parquet(paths.accepted, result.accepted)
    written.add(paths.accepted)
    write_json(paths.ingest_metrics, counts)
    written.add(paths.ingest_metrics)
    return counts
