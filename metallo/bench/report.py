"""The benchmark's report: a table on the terminal and the JSON file."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from metallo.bench.config import SECTIONS


def _fmt(value: float, digits: int = 1) -> str:
    return "inf" if not math.isfinite(value) else f"{value:,.{digits}f}"


def _print_table(title: str, columns: list[str], rows: list[list[str]], notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console = Console(file=sys.stdout, width=max(100, shutil.get_terminal_size((100, 20)).columns))
    console.print(table)
    for note in notes:
        console.print(note, highlight=False)


def machine_line(machine: dict) -> str:
    """CPU, cores, GPU and library versions in one line."""
    gpu = machine.get("gpu") or "no GPU"
    return (
        f"{machine['cpu_model']}, {machine['cpu_cores_usable']} cores, {gpu}; torch {machine['torch']}, "
        f"transformers {machine['transformers']}"
    )


#: Ratio key -> what the report calls it.
RATIO_LABELS = {
    "input_speedup_b_over_a": "(b)/(a) input pipeline speed-up",
    "train_stage_efficiency_d_over_c": "(d)/(c) train stage vs on-device ceiling",
    "train_steps_efficiency_d_over_c": "(d)/(c) train stage without eval/checkpoint time vs ceiling",
    "input_headroom_b_over_c": "(b)/(c) Metallo input vs training step",
    "old_input_headroom_a_over_c": "(a)/(c) old input vs training step",
}


def print_report(result: dict) -> None:
    """The results of :func:`~metallo.bench.run_benchmark` or ``run_convert_scaling`` as a table plus ratios."""
    if "runs" in result:
        _print_scaling(result)
    else:
        _print_benchmark(result)


def _print_scaling(result: dict) -> None:
    cfg = result["config"]
    rows = [
        [
            str(r["samples"]),
            _fmt(r["seconds"], 2),
            _fmt(r["images_per_s"]),
            _fmt(r["baseline_rss_mb"], 0),
            _fmt(r["peak_rss_mb"], 0),
            _fmt(r["rss_growth_mb"], 1),
            _fmt(r["peak_rss_workers_mb"], 0),
            _fmt(r["output_mb"], 0),
        ]
        for r in result["runs"]
    ]
    title = f"convert scaling: {cfg['crop']}x{cfg['crop']} crop, spectra {cfg['n_spectra']}x{cfg['spectra_length']}"
    columns = [
        "samples",
        "seconds",
        "images/s",
        "RSS before MB",
        "peak RSS MB",
        "growth MB",
        "worker peak RSS MB",
        "output MB",
    ]
    notes = [
        f"peak RSS ratio {_fmt(result['peak_rss_ratio'], 2)}x for {_fmt(result['output_ratio'], 1)}x the output",
        f"machine: {machine_line(result['machine'])}",
    ]
    _print_table(title, columns, rows, notes)


def _print_benchmark(result: dict) -> None:
    cfg = result["config"]
    rows = []
    for key, label in SECTIONS.items():
        if key in result["sections"]:
            sec = result["sections"][key]
            rows.append([label, _fmt(sec["samples_per_s"]), str(sec["samples"]), _fmt(sec["seconds"], 3)])
            if "samples_per_s_without_eval_checkpoint" in sec:
                steps_only = sec["samples_per_s_without_eval_checkpoint"]
                rows.append(
                    [
                        "    (d) without eval/checkpoint time",
                        _fmt(steps_only),
                        str(sec["samples"]),
                        _fmt(sec["seconds"] - sec["eval_checkpoint_s"], 3),
                    ]
                )
    notes = [f"{RATIO_LABELS[k]}: {_fmt(v, 2)}x" for k, v in result["ratios"].items()]
    notes.append(f"machine: {machine_line(result['machine'])}")
    title = (
        f"metallo bench: {cfg['model']}/{cfg['backbone']}, {cfg['samples']} samples, crop {cfg['crop']} -> "
        f"model {cfg['model_image_size']}, spectra {cfg['n_spectra']}x{cfg['spectra_length']}, batch "
        f"{cfg['batch_size']}, {cfg['workers']} workers, {cfg['device']} {cfg['precision']}"
        f"{' compiled' if cfg['compile'] else ''}"
    )
    _print_table(title, ["measurement", "samples/s", "samples", "seconds"], rows, notes)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_result(result: dict, path: str | os.PathLike) -> Path:
    """Write ``result`` as JSON (inf and NaN as null) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(result), indent=2) + "\n", encoding="utf-8")
    return path
