"""The ``evaluate`` stage: test-split metrics, predictions and figures, logged into the train run.

MLflow: the test metrics are logged into the run that trained the model (found through the untracked
``models/run.json``, or by the weights' digest when that file is missing or belongs to another model), linked
to the run's LoggedModel and to the test dataset; with ``tracking.register`` the model is registered (see
:mod:`metallo.tracking.lineage`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metallo import figures
from metallo import metric_names as names
from metallo.baselines import baseline_metrics
from metallo.constants import INTERVAL_LEVEL
from metallo.data.convert import grid_extents
from metallo.data.dataset import load_splits
from metallo.errors import MetalloError
from metallo.io import read_json, write_csv, write_json
from metallo.layout import PATHS, Paths, load_stats, wavelength_range
from metallo.metrics import regression_metrics
from metallo.params import Section
from metallo.prediction import load_model, predict_arrays
from metallo.tracking import lineage
from metallo.tracking.console import quiet_libraries
from metallo.tracking.tracker import NOTE_TAG, Tracker, TrackingParams
from metallo.training.arguments import tracks_mlflow
from metallo.uncertainty import conformal_halfwidth, coverage, load_calibration
from metallo.uris import masked

#: The subfolder of the figures that holds the explanation montage (cells.png or attention.png).
EXPLANATION_DIR = "explanation"


@dataclass(frozen=True)
class EvaluateParams(Section):
    """The ``evaluate:`` section."""

    NAME = "evaluate"
    batch_size: int
    attention_examples: int
    interval: float = INTERVAL_LEVEL

    def check(self) -> None:
        self._set("batch_size", int(self.batch_size))
        self._set("interval", float(self.interval))


def _finite_or_none(metrics: dict[str, float]) -> dict[str, float | None]:
    """JSON has no NaN: undefined metrics (e.g. Pearson r of a constant) become null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def prediction_interval(paths: Paths, y_true: np.ndarray, y_pred: np.ndarray, level: float) -> dict[str, Any]:
    """Split-conformal interval bounds for ``y_pred`` and the coverage they reach on ``y_true``."""
    residuals = load_calibration(paths.model)
    halfwidth = conformal_halfwidth(residuals, level) if residuals is not None else math.nan
    lower, upper = y_pred - halfwidth, y_pred + halfwidth
    summary = {
        "level": level,
        "halfwidth": halfwidth,
        "coverage": coverage(y_true, lower, upper),
        "calibration_n": int(len(residuals)) if residuals is not None else 0,
    }
    return {"summary": _finite_or_none(summary), "lower": lower.astype(np.float64), "upper": upper.astype(np.float64)}


@dataclass(frozen=True)
class SplitPredictions:
    """The test split, its model inputs, its labels and what the model predicted (and explained) for it."""

    test: Any  # the test split (metallo.data.dataset)
    images: Any  # torch tensors, as ``test.arrays()`` returns them
    spectra: Any
    y_true: np.ndarray
    y_pred: np.ndarray
    attention: np.ndarray | None  # attention maps or per-cell contributions, when the model gives them


def run_evaluate(params: dict, paths: Paths = PATHS) -> dict[str, Any]:
    """Predict the test split. Reads ``evaluate``, ``tracking``, ``train.report_to``, ``data.wavelengths``."""
    quiet_libraries()
    cfg = EvaluateParams.from_params(params)
    wavelengths = wavelength_range(params)
    model, processor = load_model(paths.model)
    splits = load_splits(paths)
    result = predict_test(model, processor, splits["test"], cfg.batch_size)
    metrics = regression_metrics(result.y_true, result.y_pred)
    baselines = baseline_metrics(load_stats(paths), splits["train"], result.test, model.config, processor)
    interval = prediction_interval(paths, result.y_true, result.y_pred, cfg.interval)
    report = eval_report(metrics, baselines, interval["summary"], len(result.y_true))
    write_json(paths.eval_metrics, report)
    result = replace(result, y_pred=result.y_pred.astype(np.float64))  # the files and figures show float64
    write_predictions(paths.predictions, result, interval)
    extents = grid_extents(paths.processed)[result.test.index]  # where each test sample's grid lies in its image
    write_figures(
        paths.metrics / "figures",
        model.config,
        result,
        metrics,
        extents,
        wavelengths=wavelengths,
        examples=cfg.attention_examples,
    )
    log_to_mlflow(params, paths, metrics, baselines, interval["summary"], result.test)
    print_summary(metrics, baselines, len(result.y_true), paths.eval_metrics)
    return report


def predict_test(model, processor, test, batch_size: int) -> SplitPredictions:
    """The model's predictions for the (non-empty) test split, with its attention or cell maps when it has them."""
    if len(test) == 0:
        raise MetalloError("the test split is empty: no sample has a slice_id in split.test_slices.")
    images, spectra = test.arrays()
    wants_attention = model.config.explanation_maps is not None
    y_pred, attention = predict_arrays(
        model,
        processor,
        images.numpy(),
        spectra.numpy(),
        batch_size=batch_size,
        return_attention=wants_attention,
    )
    return SplitPredictions(test, images, spectra, test.labels.astype(np.float64), y_pred, attention)


def eval_report(metrics: dict, baselines: dict, interval: dict, n: int) -> dict[str, Any]:
    """``metrics/eval.json``: the test metrics and n (``test.rmse``), the baselines on the same split
    (``baseline.classical.rmse``) and the interval (``interval.coverage``); NaN as null. The names are
    :mod:`metallo.metric_names`'s, nested (MLflow: ``test/rmse``)."""
    return {
        "test": {**_finite_or_none(metrics), "n": int(n)},
        "baseline": {name: _finite_or_none(values) for name, values in baselines.items()},
        "interval": interval,
    }


def write_predictions(path: Path, result: SplitPredictions, interval: dict[str, Any]) -> None:
    """``metrics/predictions.csv``: one row per test sample (``dos_true``, ``dos_pred``, the residual and the
    interval bounds ``dos_lower``..``dos_upper``: the columns ``metallo predict`` writes)."""
    write_csv(
        path,
        pd.DataFrame(
            {
                "sample_id": result.test.sample_ids,
                names.TRUE: result.y_true,
                names.PREDICTION: result.y_pred,
                "residual": result.y_pred - result.y_true,
                names.LOWER: interval["lower"],
                names.UPPER: interval["upper"],
            }
        ),
        float_format="%.6g",
    )


def write_figures(
    out: Path, config, result: SplitPredictions, metrics: dict, extents: np.ndarray, *, wavelengths, examples
) -> None:
    """The evaluation's figures in ``out``; other PNGs there (from an earlier evaluation) are removed.

    ``examples``: how many test samples the attention or cell-contribution montage shows
    (``evaluate.attention_examples``); it goes to ``out/explanation/`` (only MetalloNet and ToyNet draw one).
    ``dvc plots show`` lists ``residuals.png``, ``spectra_grid.png`` and ``explanation/`` (dvc.yaml): predicted vs
    true and residuals vs true are drawn there from ``metrics/predictions.csv``, so their PNGs (for MLflow) are not
    shown twice.
    """
    y_true, y_pred = result.y_true, result.y_pred
    written = [
        figures.predicted_vs_true(y_true, y_pred, metrics, out / "pred_vs_true.png"),
        figures.residual_histogram(y_true, y_pred, out / "residuals.png"),
        figures.residuals_vs_true(y_true, y_pred, out / "residuals_vs_true.png"),
        figures.spectra_on_grid(
            result.images[0].numpy(),
            result.spectra[0].numpy(),
            tuple(config.grid),
            result.test.sample_ids[0],
            out / "spectra_grid.png",
            wavelengths=wavelengths,
            extent=tuple(extents[0]),
        ),
    ]
    (out / EXPLANATION_DIR).mkdir(parents=True, exist_ok=True)  # empty for the classical model: dvc plots needs it
    if result.attention is not None:
        written.append(
            explanation_figure(out / EXPLANATION_DIR, config, result, extents, min(int(examples), len(y_true)))
        )
    for stale in set(out.rglob("*.png")) - set(written):
        stale.unlink()


def explanation_figure(out: Path, config, result: SplitPredictions, extents: np.ndarray, k: int) -> Path:
    """The first ``k`` test samples with what the model shows of its reasoning: per-cell contributions
    (grid fusion) or the spatial-attention map."""
    images, maps = result.images[:k].numpy(), result.attention[:k]
    y_true, y_pred, sample_ids = result.y_true[:k], result.y_pred[:k], result.test.sample_ids[:k]
    if config.explanation_maps == "cells":
        return figures.cell_contribution_montage(
            images, maps, extents[:k], y_true, y_pred, sample_ids, out / "cells.png"
        )
    return figures.attention_montage(
        images, maps, y_true, y_pred, sample_ids, out / "attention.png", model_image_size=int(config.image_size)
    )


def print_summary(metrics: dict, baselines: dict, n: int, report_path: Path) -> None:
    print(
        f"evaluate: test R² {metrics['r2']:.3f}, RMSE {metrics['rmse']:.4g}, MAE {metrics['mae']:.4g}, "
        f"n={n}; "
        f"classical baseline R² {baselines['classical']['r2']:.3f}, mean baseline RMSE "
        f"{baselines['mean']['rmse']:.4g} -> {report_path}"
    )


def open_train_run(params: dict, paths: Paths) -> Tracker:
    """The MLflow run that trained ``paths.model`` (a disabled tracker when there is none).

    ``models/run.json`` names it when it was written for these weights (a ``run_id`` of null: trained with
    MLflow off). Otherwise (DVC restored the model from its run cache, or the file is gone) the run is the
    newest one tagged with the weights' digest.
    """
    experiment = TrackingParams.from_params(params).experiment
    digest = lineage.model_digest(paths.model)
    run = read_json(paths.run_file) if paths.run_file.is_file() else {}
    if run.get("model_digest") == digest:
        return Tracker(experiment, enabled=bool(run.get("run_id")), run_id=run.get("run_id"))
    if not tracks_mlflow(params.get("train") or {}):
        return Tracker(experiment, enabled=False)
    tracker = Tracker(experiment)
    tracker.run_id = lineage.find_run(tracker, digest)
    if tracker.run_id is None:
        if tracker.enabled:
            print(
                f"evaluate: no MLflow run in {masked(tracker.uri)} trained this model; the test metrics are in "
                f"{paths.eval_metrics} only"
            )
        tracker.enabled = False
    return tracker


def log_to_mlflow(params: dict, paths: Paths, metrics: dict, baselines: dict, interval: dict, test) -> None:
    """Test metrics (linked to the LoggedModel and the test dataset), baselines, artifacts; the registry."""
    tracker = open_train_run(params, paths)
    tracker.sweep_stale_runs()
    if not tracker.enabled:
        return
    model_id = lineage.find_logged_model(tracker)
    run = tracker.call("read the run", lambda: tracker.client().get_run(tracker.run_id))
    data_digest = run.data.tags.get("data.hash", "") if run else ""
    datasets = tracker.call(
        "describe the test dataset", lambda: lineage.split_datasets({"test": test}, paths.processed, data_digest)
    )
    test_metrics = {f"test/{k}": v for k, v in metrics.items()}
    lineage.log_model_metrics(tracker, test_metrics, model_id, (datasets or {}).get("test"))
    others = {"test/n": float(len(test)), **names.flat({"baseline": baselines, "interval": interval})}
    tracker.log_metrics(lineage.unlogged(tracker, others))
    tracker.log_artifact(paths.metrics / "figures", "figures")
    for path in (paths.eval_metrics, paths.train_metrics, paths.ingest_metrics, paths.split_metrics):
        tracker.log_artifact(path, "metrics")
    tracker.log_artifact(paths.predictions, "metrics")
    results = {**test_metrics, **others}
    note = lineage.note_with_results(run.data.tags.get(NOTE_TAG, "") if run else "", results)
    tracker.set_tags({NOTE_TAG: note})
    name = TrackingParams.from_params(params).register
    if name and model_id:
        run_name = run.info.run_name if run else ""
        description = lineage.version_description(results, run_name)
        version = lineage.register_model(tracker, name, model_id, results, description)
        if version:
            print(
                f"evaluate: registered as {name!r} version {version} in the MLflow Model Registry "
                f"(alias {lineage.BEST_ALIAS!r} = lowest test RMSE)"
            )
