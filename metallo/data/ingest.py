"""Ingest: validate a raw manifest row by row and account for every row.

Every row of ``manifest.csv`` ends up in exactly one of two tables: the accepted samples
(with SHA-256 digests of their files) or the rejected rows with the reason(s). Only a
problem with the manifest file as a whole (missing, not UTF-8, a missing column, no rows)
stops ingest before the rows are checked.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from metallo.data.readers import SampleError, read_image_rgb, read_spectra
from metallo.errors import MetalloError
from metallo.io import PathEscapeError, resolve_inside, sha256_file, write_csv, write_json, write_parquet
from metallo.layout import PATHS, DataShape, Paths
from metallo.params import section
from metallo.parallel import map_ordered

MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("sample_id", "slice_id", "image", "spectra", "dos")
#: The line of manifest.csv that holds data row 0 (line 1 is the header).
FIRST_DATA_LINE = 2
ON_ERROR_CHOICES = ("fail", "skip")


@dataclass
class IngestResult:
    """Outcome of checking a manifest: every row is in ``accepted`` or ``rejected``."""

    accepted: pd.DataFrame   # manifest columns + row, image_sha256, spectra_sha256, width, height, mode
    rejected: pd.DataFrame   # row, sample_id, reason
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
    """Read a manifest (``source`` is a raw folder or a .csv) keeping every value a string (``007`` stays ``007``)."""
    raw_dir, path = locate_manifest(source)
    if not raw_dir.is_dir():
        raise MetalloError(
            f"raw data folder {raw_dir} does not exist. Set ingest.raw_dir in params.yaml to a folder "
            f"holding {MANIFEST} (see docs/data.md), or run `dvc repro synthesize` for the demo data."
        )
    if not path.is_file():
        raise MetalloError(f"{path} not found: a raw data folder must hold {MANIFEST} (see docs/data.md).")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8", skipinitialspace=False)
    except UnicodeDecodeError as err:
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
        raise MetalloError(f"{path} is empty; it needs a header line {','.join(MANIFEST_COLUMNS)} and one row per sample.") from None
    except pd.errors.ParserError as err:
        raise MetalloError(f"{path} is not a readable CSV file: {err}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    required = [c for c in MANIFEST_COLUMNS if require_label or c != "dos"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise MetalloError(
            f"{path} is missing column(s) {', '.join(missing)}; the header must name "
            f"{','.join(MANIFEST_COLUMNS)} (see docs/data.md)."
        )
    if not isinstance(frame.index, pd.RangeIndex):  # pandas took the first field as an index and shifted the rest
        raise MetalloError(
            f"{path}: data rows have more fields than the header (a trailing comma?); every row needs exactly "
            f"the columns {','.join(MANIFEST_COLUMNS)} (see docs/data.md)."
        )
    if frame.empty:
        raise MetalloError(f"{path} has a header but no rows; add one row per sample.")
    if "dos" not in frame.columns:
        frame["dos"] = ""
    return frame


def _check_row(task: tuple[int, dict[str, str], str, tuple[int, int], bool]) -> dict:
    """Check one manifest row (runs in a worker process)."""
    row, record, root, spectra_shape, require_label = task
    reasons: list[str] = []
    out: dict = {"row": row}
    for column in ("sample_id", "slice_id"):
        if not record[column].strip():
            reasons.append(f"{column} is empty")
    dos_text = record["dos"].strip()
    out["dos"] = math.nan
    if dos_text:
        try:
            out["dos"] = float(dos_text)
        except ValueError:
            reasons.append(f"dos {dos_text!r} is not a number")
        else:
            if not math.isfinite(out["dos"]):
                reasons.append(f"dos is not finite ({dos_text})")
    elif require_label:
        reasons.append("dos is missing")

    for column, reader in (("image", read_image_rgb), ("spectra", None)):
        relative = record[column].strip()
        if not relative:
            reasons.append(f"{column} path is empty")
            continue
        if "\0" in relative:  # the OS cannot open such a path (os functions raise ValueError)
            reasons.append(f"{column} path {relative!r} contains a NUL character")
            continue
        try:
            try:
                path = resolve_inside(root, relative)
            except RuntimeError as err:  # Path.resolve on Python < 3.13: a symbolic-link loop
                reasons.append(f"{column} {relative!r} cannot be resolved ({err})")
                continue
            if column == "image":
                image = reader(path)
                out.update(width=image.width, height=image.height)
            else:
                read_spectra(path, spectra_shape)
            out[f"{column}_sha256"] = sha256_file(path)
        except (SampleError, PathEscapeError) as err:
            reasons.append(f"{column} {relative!r}: {err}" if isinstance(err, PathEscapeError) else str(err))
        except OSError as err:  # unreadable: permissions, a folder named like a file, ...
            reasons.append(f"{column} {relative!r} cannot be read ({err.strerror or err})")
    out["reasons"] = reasons
    return out


def validate_manifest(raw_dir: str | os.PathLike, *, spectra_shape: tuple[int, int], require_label: bool = True,
                      workers: int | None = None, show_progress: bool | None = None) -> IngestResult:
    """Check every row of a manifest (``raw_dir`` or a .csv in it); never stops at the first bad row."""
    manifest = read_manifest(raw_dir, require_label=require_label)
    raw_dir, _ = locate_manifest(raw_dir)
    records = manifest[list(MANIFEST_COLUMNS)].to_dict("records")
    tasks = [(FIRST_DATA_LINE + i, rec, str(raw_dir), tuple(spectra_shape), require_label) for i, rec in enumerate(records)]
    checks = list(map_ordered(_check_row, tasks, workers=workers, desc="ingest", show_progress=show_progress))

    first_row_of: dict[str, int] = {}
    accepted, rejected = [], []
    for record, check in zip(records, checks):
        sample_id = record["sample_id"]
        reasons = list(check["reasons"])
        if sample_id.strip():
            if sample_id in first_row_of:
                reasons.insert(0, f"duplicate sample_id {sample_id!r} (first seen at row {first_row_of[sample_id]})")
            else:
                first_row_of[sample_id] = check["row"]
        if reasons:
            rejected.append({"row": check["row"], "sample_id": sample_id, "reason": "; ".join(reasons)})
        else:
            accepted.append({
                "row": check["row"], "sample_id": sample_id, "slice_id": record["slice_id"].strip(),
                "image": record["image"].strip(), "spectra": record["spectra"].strip(), "dos": check["dos"],
                "image_sha256": check["image_sha256"], "spectra_sha256": check["spectra_sha256"],
                "width": check["width"], "height": check["height"],
            })
    accepted_frame = pd.DataFrame(accepted, columns=[
        "row", "sample_id", "slice_id", "image", "spectra", "dos", "image_sha256", "spectra_sha256", "width", "height"])
    rejected_frame = pd.DataFrame(rejected, columns=["row", "sample_id", "reason"])
    result = IngestResult(accepted_frame.astype({"row": "int64", "dos": "float64"}), rejected_frame, total=len(records))
    assert result.counts["accepted"] + result.counts["rejected"] == result.total
    return result


def format_rejections(rejected: pd.DataFrame, limit: int | None = None) -> str:
    """One line per rejected row: ``row 5 (s004): reason``."""
    rows = rejected if limit is None else rejected.head(limit)
    lines = [f"  row {r.row} ({r.sample_id or 'no sample_id'}): {r.reason}" for r in rows.itertuples()]
    if limit is not None and len(rejected) > limit:
        lines.append(f"  ... and {len(rejected) - limit} more")
    return "\n".join(lines)


def run_ingest(params: dict, paths: Paths = PATHS) -> dict[str, int]:
    """Validate ``ingest.raw_dir``. Reads ``ingest``, ``data``."""
    cfg = section(params, "ingest", ["raw_dir", "on_error"])
    if cfg["on_error"] not in ON_ERROR_CHOICES:
        raise MetalloError(f"ingest.on_error must be one of {ON_ERROR_CHOICES}; got {cfg['on_error']!r}.")
    result = validate_manifest(cfg["raw_dir"], spectra_shape=DataShape.from_params(params).spectra)
    write_csv(paths.interim / "rejected.csv", result.rejected)
    counts = result.counts
    print(f"ingest: {counts['total']} rows, {counts['accepted']} accepted, {counts['rejected']} rejected "
          f"(details: {paths.interim / 'rejected.csv'})")
    if counts["rejected"]:
        listing = format_rejections(result.rejected)
        if cfg["on_error"] == "fail":
            raise MetalloError(
                f"{counts['rejected']} of {counts['total']} manifest rows in {cfg['raw_dir']} are invalid:\n{listing}\n"
                "Fix these rows, or set ingest.on_error: skip to continue with the valid rows only "
                f"(the rejected ones stay listed in {paths.interim / 'rejected.csv'})."
            )
        print(listing)
    write_parquet(paths.interim / "samples.parquet", result.accepted)
    write_json(paths.metrics / "ingest.json", counts)
    return counts
