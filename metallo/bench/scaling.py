"""``metallo bench --convert-scaling``: the convert stage alone at N and factor × N samples.

The raw folder (factor × N samples) is synthesised and ingested once; each convert then runs in a
fresh process (:mod:`metallo.bench.convert_child`) over the first rows and reports its own peak
RSS (``ru_maxrss`` of itself and of its worker processes), so the two sizes' memory can be compared.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from metallo.bench.benchmark import now, ratio, work_folder
from metallo.bench.config import BenchConfig
from metallo.bench.convert_child import RESULT_PREFIX
from metallo.bench.data import rate, synthesize_raw
from metallo.bench.machine import machine_info
from metallo.errors import MetalloError
from metallo.parallel import resolve_workers


def convert_in_subprocess(spec: dict) -> dict:
    """Run :mod:`metallo.bench.convert_child` on ``spec`` with this checkout's ``metallo``; its result."""
    env = dict(os.environ)
    project_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = project_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [sys.executable, "-m", "metallo.bench.convert_child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode or not lines:
        raise MetalloError(
            f"bench: the convert subprocess failed (status {proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def _run(config: BenchConfig, root: Path, raw: Path, n: int) -> dict[str, Any]:
    """Convert the first ``n`` rows in a fresh process; its time, memory and output size."""
    out = root / f"processed-{n}"
    out.mkdir()
    child = convert_in_subprocess(
        {
            "samples": str(root / "samples.parquet"),
            "n": n,
            "raw": str(raw),
            "out": str(out),
            "resize": config.resize,
            "crop": config.image_size,
            "spectra_shape": list(config.spectra_shape),
            "workers": config.convert_workers,
        }
    )
    shutil.rmtree(out, ignore_errors=True)
    row_mb = (config.image_size * config.image_size * 3 + config.n_spectra * config.spectra_length * 4) / 1024**2
    return {
        "samples": n,
        "seconds": child["seconds"],
        "images_per_s": rate(n, child["seconds"]),
        "peak_rss_mb": child["peak_rss_kb"] / 1024,
        "peak_rss_workers_mb": child["peak_rss_workers_kb"] / 1024,
        "baseline_rss_mb": child["baseline_rss_kb"] / 1024,
        "rss_growth_mb": (child["peak_rss_kb"] - child["baseline_rss_kb"]) / 1024,
        "output_mb": n * row_mb,
    }


def run_convert_scaling(config: BenchConfig) -> dict[str, Any]:
    """Convert throughput (images/s) and peak RSS at ``config.samples`` and ``scaling_factor`` times that."""
    config.check_scaling()
    sizes = [config.samples, config.samples * config.scaling_factor]
    report = {
        "sizes": sizes,
        "image_size": config.image_size,
        "resize": config.resize,
        "crop": config.image_size,
        "n_spectra": config.n_spectra,
        "spectra_length": config.spectra_length,
        "workers": config.convert_workers,
        "workers_resolved": resolve_workers(config.convert_workers or None),
        "seed": config.seed,
    }
    result: dict[str, Any] = {
        "benchmark": "metallo bench --convert-scaling",
        "created": now(),
        "machine": machine_info(),
        "config": report,
        "runs": [],
    }
    with work_folder(config.work_dir, "metallo-bench-convert-") as root:
        raw = root / "raw"
        accepted, timings = synthesize_raw(raw, config, sizes[-1])
        result["synthesize_s"] = timings["synthesize_s"]
        accepted.to_parquet(root / "samples.parquet")
        result["runs"] = [_run(config, root, raw, n) for n in sizes]
    small, large = result["runs"]
    for key in ("peak_rss", "peak_rss_workers", "output"):
        result[f"{key}_ratio"] = ratio(large[f"{key}_mb"], small[f"{key}_mb"])
    return result
