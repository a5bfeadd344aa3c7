"""``metallo bench``'s four measurements over the same synthetic samples, and their ratios.

(a) ``old_png_pipeline``: the original system's per-sample pipeline. A torch ``Dataset``
    decodes each PNG with PIL and applies ``torchvision.transforms`` ``ToTensor → Resize →
    CenterCrop → Normalize``, loads the spectra ``.npy``, then ``DataLoader`` (``--workers``)
    and a copy to the device.
(b) ``metallo_input_pipeline``: :class:`~metallo.data.dataset.MetalloDataset` over the convert
    stage's uint8 ``.npy`` memory maps → ``DataLoader`` (``default_collate``, pinned memory on
    CUDA) → non-blocking copy to the device → :class:`~metallo.processing.MetalloProcessor`
    (uint8 → float, resize, normalise, channels-last) on the device.
(c) ``train_step_on_device``: the ceiling. Forward + backward + AdamW step of the model on one
    fixed batch already on the device (bf16 autocast and channels-last on CUDA; ``--compile``).
(d) ``train_stage``: the real ``train`` stage (:func:`metallo.training.train.run_train`, the code
    ``dvc repro train`` runs) with the project's ``params.yaml`` on the same data: evaluation,
    checkpoints and MLflow logging as configured; samples/s after the warm-up with and without the
    evaluation/checkpoint time (:mod:`metallo.bench.train_path`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from metallo.bench.config import BenchConfig
from metallo.bench.data import BenchData, PngDataset, data_statistics, loader, prepare_data, to_device
from metallo.bench.machine import machine_info, resolve_device, resolve_precision
from metallo.bench.timers import build_model, time_input_pipeline, time_train_step
from metallo.bench.train_path import time_train_stage
from metallo.data.dataset import MetalloDataset
from metallo.layout import IMAGES_FILE, SPECTRA_FILE
from metallo.models import get_config_class
from metallo.processing import MetalloProcessor

#: Ratio key -> (numerator section, denominator section).
RATIOS = {
    "input_speedup_b_over_a": ("metallo_input_pipeline", "old_png_pipeline"),
    "train_stage_efficiency_d_over_c": ("train_stage", "train_step_on_device"),
    "input_headroom_b_over_c": ("metallo_input_pipeline", "train_step_on_device"),
    "old_input_headroom_a_over_c": ("old_png_pipeline", "train_step_on_device"),
}


def now() -> str:
    """The current UTC time, to the second (the report's ``created``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("inf")


@contextmanager
def work_folder(work_dir, prefix: str) -> Iterator[Path]:
    """``work_dir`` (kept afterwards) or a temporary folder (removed afterwards)."""
    root = Path(tempfile.mkdtemp(prefix=prefix)) if work_dir is None else Path(work_dir)
    root.mkdir(parents=True, exist_ok=True)
    try:
        yield root
    finally:
        if work_dir is None:
            shutil.rmtree(root, ignore_errors=True)


@dataclass
class Bench:
    """What every section measures with: the run's config, device and precision, the data, processor and stats."""

    config: BenchConfig
    device: Any
    precision: str
    data: BenchData
    stats: dict
    processor: Any
    dataset: Any
    root: Path


def _old_png_pipeline(b: Bench) -> dict[str, Any]:
    c = b.config
    old = PngDataset(
        b.data.raw,
        b.data.table["image"].tolist(),
        b.data.table["spectra"].tolist(),
        b.data.labels,
        resize=c.resize,
        crop=c.image_size,
        mean=b.stats["image"]["mean"],
        std=b.stats["image"]["std"],
    )
    batches = loader(old, batch_size=c.batch_size, workers=c.workers, device=b.device)
    return {
        **time_input_pipeline(batches, b.device, passes=c.passes),
        "workers": c.workers,
        "output_size": c.image_size,
    }


def _metallo_input_pipeline(b: Bench) -> dict[str, Any]:
    c = b.config
    batches = loader(b.dataset, batch_size=c.batch_size, workers=c.workers, device=b.device)
    return {
        **time_input_pipeline(batches, b.device, passes=c.passes, process=b.processor),
        "workers": c.workers,
        "output_size": c.model_image_size,
    }


def _train_step_on_device(b: Bench) -> dict[str, Any]:
    import torch
    from torch.utils.data import default_collate

    first = default_collate([b.dataset[i] for i in range(b.config.batch_size)])  # the first batch, as (b) has it
    result = time_train_step(
        build_model(b.config, b.stats), b.processor(to_device(first, b.device)), b.device, b.config, b.precision
    )
    if b.device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def _train_stage(b: Bench) -> dict[str, Any]:
    return time_train_stage(b.data, b.config, b.device, b.precision, b.root)


MEASUREMENTS = {
    "old_png_pipeline": _old_png_pipeline,
    "metallo_input_pipeline": _metallo_input_pipeline,
    "train_step_on_device": _train_step_on_device,
    "train_stage": _train_stage,
}


def _prepare(config: BenchConfig, device, precision: str, root: Path) -> Bench:
    data = prepare_data(root, config)
    stats = data_statistics(data.processed, data.labels)
    processor = MetalloProcessor.from_stats(
        stats,
        image_size=config.model_image_size,
        resize=config.resize,
        crop=config.image_size,
        raw_copies=get_config_class(config.model)().raw_copies,
    )
    dataset = MetalloDataset(
        data.processed / IMAGES_FILE,
        data.processed / SPECTRA_FILE,
        np.arange(len(data.table)),
        data.labels,
        data.table["sample_id"].tolist(),
    )
    return Bench(config, device, precision, data, stats, processor, dataset, root)


def _report_config(c: BenchConfig, device, precision: str, threads: int) -> dict[str, Any]:
    """The sizes and settings as the report lists them."""
    return {
        "samples": c.samples,
        "image_size": c.image_size,
        "resize": c.resize,
        "crop": c.image_size,
        "model_image_size": c.model_image_size,
        "n_spectra": c.n_spectra,
        "spectra_length": c.spectra_length,
        "grid": list(c.grid),
        "batch_size": c.batch_size,
        "model": c.model,
        "backbone": c.backbone,
        "steps": c.steps,
        "warmup_steps": c.warmup_steps,
        "passes": c.passes,
        "workers": c.workers,
        "device": str(device),
        "precision": precision,
        "compile": c.compile,
        "seed": c.seed,
        "torch_threads": threads,
        "params": str(c.params),
        "profile": c.profile,
    }


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """``torch.set_num_threads(threads)`` for the block (None: unchanged); yields the count in force."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def run_benchmark(config: BenchConfig) -> dict[str, Any]:
    """Run the measurements ``config.sections`` names and return the results (see the module docstring)."""
    config.check()
    with torch_threads(config.threads) as threads:
        device = resolve_device(config.device)
        precision = resolve_precision(config.precision, device)
        result: dict[str, Any] = {
            "benchmark": "metallo bench",
            "created": now(),
            "machine": machine_info(),
            "config": _report_config(config, device, precision, threads),
            "sections": {},
        }
        with work_folder(config.work_dir, "metallo-bench-") as root:
            bench = _prepare(config, device, precision, root)
            result["setup"] = bench.data.timings
            for name, measure in MEASUREMENTS.items():
                if name in config.sections:
                    result["sections"][name] = measure(bench)
    rate = {k: v["samples_per_s"] for k, v in result["sections"].items()}
    result["ratios"] = {
        key: ratio(rate[num], rate[den]) for key, (num, den) in RATIOS.items() if num in rate and den in rate
    }
    if "train_stage" in result["sections"] and "train_step_on_device" in rate:
        steps_only = result["sections"]["train_stage"]["samples_per_s_without_eval_checkpoint"]
        result["ratios"]["train_steps_efficiency_d_over_c"] = ratio(steps_only, rate["train_step_on_device"])
    return result
