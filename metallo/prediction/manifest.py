"""Predict DOS for new samples: the same validation, geometry and bit depth as training, then the model.

The geometry (``fit``, ``resize``, ``crop``) and the bit depth 16-bit images are scaled with
come from the model's processor (``preprocessor_config.json``), i.e. from the convert run the
model was trained on. A row whose files cannot be used is rejected, the others are predicted.

    from metallo import predict
    result = predict("models/model", "new/manifest.csv")
    result.predictions  # sample_id, dos_pred, dos_lower, dos_upper

Each prediction carries a split-conformal interval at ``interval`` (default 90 %) from the
model's validation residuals (``calibration.json``; see :mod:`metallo.uncertainty`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from metallo.constants import INTERVAL_LEVEL
from metallo.data.geometry import Geometry
from metallo.data.ingest import format_rejections, locate_manifest, validate_manifest
from metallo.data.readers import SampleError, read_image_rgb, read_spectra
from metallo.errors import MetalloError
from metallo.io import resolve_inside, write_csv
from metallo.metrics import regression_metrics
from metallo.parallel import progress
from metallo.prediction.predictor import Predictor, load_predictor
from metallo.uncertainty import check_level


@dataclass
class PredictResult:
    predictions: pd.DataFrame  # sample_id, dos_pred, dos_lower, dos_upper (and dos_true when labelled)
    rejected: pd.DataFrame  # row, sample_id, reason — as ingest reports them
    metrics: dict[str, float] | None  # when every accepted row has a dos label

    def summary(self) -> str:
        text = f"{len(self.predictions)} predicted, {len(self.rejected)} rejected"
        if self.metrics:
            text += f"; against the manifest's dos: R² {self.metrics['r2']:.3f}, RMSE {self.metrics['rmse']:.4f}"
        return text


def predict(
    model_dir: str | os.PathLike,
    manifest: str | os.PathLike,
    *,
    on_error: str = "skip",
    batch_size: int = 64,
    workers: int | None = None,
    show_progress: bool | None = None,
    interval: float = INTERVAL_LEVEL,
) -> PredictResult:
    """Validate ``manifest`` exactly as ingest does (``dos`` optional), then predict every accepted row."""
    if on_error not in ("skip", "fail"):
        raise MetalloError(f"on_error must be 'skip' or 'fail'; got {on_error!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise MetalloError(f"the batch size must be a positive whole number; got {batch_size!r}.")
    check_level(interval)
    predictor = load_predictor(model_dir)
    halfwidth = predictor.halfwidth(interval)
    raw_dir, _ = locate_manifest(manifest)
    checked = validate_manifest(
        manifest,
        spectra_shape=predictor.spectra_shape,
        require_label=False,
        workers=workers,
        show_progress=show_progress,
    )
    if len(checked.rejected) and on_error == "fail":
        raise MetalloError(
            f"{len(checked.rejected)} of {checked.total} rows of {manifest} are invalid:\n"
            f"{format_rejections(checked.rejected)}\nFix them, or predict with on_error='skip' (which writes "
            "every rejected row to a .rejected.csv beside the predictions)."
        )
    samples, dos_pred, late = _predict_rows(predictor, raw_dir, checked.accepted, batch_size, show_progress)
    rejected = pd.concat([r for r in [checked.rejected, *late] if len(r)] or [checked.rejected], ignore_index=True)
    rejected = rejected.sort_values("row", kind="stable").reset_index(drop=True)
    table = pd.DataFrame(
        {
            "sample_id": samples["sample_id"].to_numpy(),
            "dos_pred": dos_pred,
            "dos_lower": dos_pred - halfwidth,
            "dos_upper": dos_pred + halfwidth,
        }
    )
    metrics = None
    labels = samples["dos"].to_numpy(dtype=np.float64)
    if len(labels) > 1 and np.isfinite(labels).all():
        table["dos_true"] = labels  # the label beside a prediction: metallo.metric_names.TRUE
        metrics = regression_metrics(labels, table["dos_pred"].to_numpy())
    return PredictResult(table, rejected, metrics)


def _predict_rows(
    predictor: Predictor, raw_dir: Path, samples: pd.DataFrame, batch_size: int, show_progress: bool | None
) -> tuple[pd.DataFrame, np.ndarray, list[pd.DataFrame]]:
    """Read and predict ``samples`` batch by batch: the rows kept, their predictions, the rows rejected late."""
    processor = predictor.processor
    geometry = Geometry(resize=processor.resize, crop=processor.crop, fit=processor.fit)
    predictions, kept, rejected = [], [], []
    batches = range(0, len(samples), batch_size)
    for start in progress(batches, total=len(batches), desc="predict", unit="batch", enabled=show_progress):
        chunk = samples.iloc[start : start + batch_size]
        images, spectra, rows = [], [], []
        for position, row in zip(range(start, start + len(chunk)), chunk.itertuples()):
            try:  # a file that changed since it was validated is rejected, not a crash
                rgb = read_image_rgb(resolve_inside(raw_dir, row.image), bit_depth=processor.bit_depth)
                image = geometry.apply(rgb)
                values = read_spectra(resolve_inside(raw_dir, row.spectra), predictor.spectra_shape)
            except (SampleError, OSError, ValueError, RuntimeError) as err:
                rejected.append(
                    pd.DataFrame(
                        [{"row": row.row, "sample_id": row.sample_id, "reason": f"changed after validation: {err}"}]
                    )
                )
                continue
            images.append(image)
            spectra.append(values)
            rows.append(position)
        if rows:
            predictions.append(predictor.predict(np.stack(images), np.stack(spectra), batch_size=batch_size))
            kept.extend(rows)
    dos_pred = np.concatenate(predictions) if predictions else np.zeros(0)
    return samples.iloc[kept].reset_index(drop=True), dos_pred, rejected


def write_predictions(result: PredictResult, out: str | os.PathLike) -> Path:
    """Write ``out`` (sample_id, dos_pred, dos_lower, dos_upper[, dos_true]) and, when rows were rejected,
    ``<out>.rejected.csv``."""
    out = Path(out)
    write_csv(out, result.predictions, float_format="%.7g")
    rejected_path = out.with_suffix(".rejected.csv")
    if len(result.rejected):
        write_csv(rejected_path, result.rejected)
    elif rejected_path.exists():
        rejected_path.unlink()
    return out
