"""``metallo compare``: several models × seeds on one data set, reported as mean ± sd.

One run of the data stages (ingest, convert), then for each seed a split (``split.seed``)
and, for each model, train (``train.seed``) and evaluate: the same functions ``dvc repro``
runs, in a scratch folder, with MLflow off. Every evaluation also fits the classical and
mean baselines on the same split, so each table row set shares its test slices. Use it to
choose defaults on your own data before you commit to one (``docs/results.md`` holds ours).

Why not DVC's grid queue (``dvc exp run --queue -S 'model.name=metallonet,toynet' -S 'train.seed=range(0,3)'``,
then ``dvc queue start``): it makes one DVC experiment (and MLflow run, and registered version) per cell of the
grid, each in its own copy of the workspace; that is the right tool for experiments you keep, and the README
shows it. ``compare`` answers a different question, "which model on this data, over seeds", without filling
the experiment list and the registry: it shares one ingest/convert and one split per seed between the models,
keeps everything in a scratch folder, and prints mean ± sd beside the baselines, which ``dvc exp show``
does not compute.
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from metallo.data.convert import run_convert
from metallo.data.ingest import run_ingest
from metallo.data.split import run_split
from metallo.errors import MetalloError
from metallo.evaluation import run_evaluate
from metallo.io import write_json
from metallo.layout import Paths
from metallo.models import list_models
from metallo.training.train import run_train

METRICS = ("r2", "rmse", "mae")


def apply_overrides(params: dict, overrides: Iterable[str]) -> dict:
    """``section.key=value`` overrides (YAML values, as ``dvc exp run -S``) applied to a copy of ``params``."""
    params = copy.deepcopy(params)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise MetalloError(f"--set {item!r}: expected section.key=value (e.g. model.hidden_dim=256).")
        target = params
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise MetalloError(f"--set {item!r}: {part!r} is not a params section.")
        target[parts[-1]] = yaml.safe_load(text)
    return params


def _paths(work: Path, *parts: str) -> Paths:
    run = work.joinpath(*parts)
    return Paths(
        synthetic=work / "synthetic",
        interim=work / "interim",
        processed=work / "processed",
        split=work / "split" / parts[0],
        model=run / "model",
        checkpoints=run / "checkpoints",
        metrics=run / "metrics",
    )


def _mean_sd(values: list[float]) -> dict[str, float | None]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return {
        "mean": statistics.fmean(finite) if finite else None,
        "sd": statistics.stdev(finite) if len(finite) > 1 else None,
        "n": len(finite),
    }


def run_compare(params: dict, *, models: list[str], seeds: list[int], work_dir: str | os.PathLike) -> dict[str, Any]:
    """Train and evaluate each model for each seed; return per-run results and mean ± sd per row."""
    if not models or not seeds:
        raise MetalloError("metallo compare needs at least one model (--models) and one seed (--seeds).")
    work = Path(work_dir).resolve()
    params = copy.deepcopy(params)
    params.setdefault("train", {})["report_to"] = []  # scratch runs stay out of the MLflow store
    data_paths = _paths(work, "data")
    run_ingest(params, data_paths)
    run_convert(params, data_paths)
    runs = []
    for seed in seeds:
        seeded = apply_overrides(params, [f"split.seed={seed}", f"train.seed={seed}"])
        run_split(seeded, _paths(work, f"seed{seed}"))
        for name in models:
            paths = _paths(work, f"seed{seed}", name)
            started = time.perf_counter()
            run_train(apply_overrides(seeded, [f"model.name={name}"]), paths)
            train_s = time.perf_counter() - started
            report = run_evaluate(seeded, paths)
            runs.append(
                {
                    "model": name,
                    "seed": seed,
                    "train_s": round(train_s, 1),
                    **{m: report["test"][m] for m in METRICS},
                    "baselines": {b: {m: v[m] for m in METRICS} for b, v in report["baseline"].items()},
                    "interval_coverage": (report.get("interval") or {}).get("coverage"),
                }
            )
    return {"models": models, "seeds": seeds, "runs": runs, "summary": summarise(runs)}


def summarise(runs: list[dict]) -> dict[str, dict]:
    """Mean ± sd over seeds per model, plus the classical and mean baselines (one value per seed)."""
    rows: dict[str, dict[str, list]] = {}
    for run in runs:
        rows.setdefault(run["model"], {m: [] for m in (*METRICS, "train_s")})
        for m in (*METRICS, "train_s"):
            rows[run["model"]][m].append(run[m])
    per_seed = {}
    for run in runs:  # the baselines depend on the split only: take each seed once
        per_seed.setdefault(run["seed"], run["baselines"])
    for name in ("classical", "mean"):
        rows[f"{name} baseline"] = {m: [b[name][m] for b in per_seed.values() if name in b] for m in METRICS}
    return {row: {m: _mean_sd(values) for m, values in metrics.items()} for row, metrics in rows.items()}


def format_table(summary: dict[str, dict]) -> str:
    """Markdown table: one row per model / baseline, mean ± sd over seeds."""

    def cell(stat: dict, spec: str) -> str:
        if stat.get("mean") is None:
            return "—"
        sd = stat.get("sd")
        return f"{stat['mean']:{spec}}" + (f" ± {sd:{spec if spec.endswith('f') else '.2g'}}" if sd is not None else "")

    lines = ["| model | test R² | test RMSE | test MAE | train time (s) | seeds |", "|---|---:|---:|---:|---:|---:|"]
    for row, stats in summary.items():
        train = cell(stats["train_s"], ".0f") if "train_s" in stats else "—"
        lines.append(
            f"| {row} | {cell(stats['r2'], '.3f')} | {cell(stats['rmse'], '.4g')} | "
            f"{cell(stats['mae'], '.4g')} | {train} | {stats['r2']['n']} |"
        )
    return "\n".join(lines)


def compare_command(
    params: dict, *, models: list[str] | None, seeds: list[int], work_dir: str, out: str | None, overrides: list[str]
) -> dict[str, Any]:
    """What ``metallo compare`` runs: overrides, the runs, the table on stdout, JSON to ``out``. No ``models``:
    every registered model."""
    models = list_models() if models is None else models
    result = run_compare(apply_overrides(params, overrides), models=models, seeds=seeds, work_dir=work_dir)
    result["overrides"] = list(overrides)
    table = format_table(result["summary"])
    print(f"\ncompare: {len(models)} model(s) × {len(seeds)} seed(s), mean ± sd over seeds\n{table}")
    if out:
        write_json(out, result)
        print(f"compare: results -> {out}")
    return result
