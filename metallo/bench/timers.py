"""The timed measurements: an input pipeline's passes and the on-device training step (the train stage: train_path).

Each returns a dict with at least ``samples_per_s``, ``samples`` and ``seconds`` (the timed part,
after an untimed warm-up).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

from metallo.bench.config import BenchConfig
from metallo.bench.data import rate, to_device
from metallo.bench.machine import synchronize
from metallo.training.components import build_model as build_training_model


def time_input_pipeline(loader, device, *, passes: int, process=None) -> dict[str, Any]:
    """Samples/s over ``passes`` full passes after one untimed warm-up pass (workers start, caches fill)."""

    def one_pass() -> int:
        seen = 0
        for batch in loader:
            batch = to_device(batch, device)
            if process is not None:
                batch = process(batch)
            seen += int(batch["pixel_values"].shape[0])
        synchronize(device)
        return seen

    t0 = time.perf_counter()
    one_pass()
    warmup_s = time.perf_counter() - t0
    seen = 0
    t0 = time.perf_counter()
    for _ in range(passes):
        seen += one_pass()
    seconds = time.perf_counter() - t0
    return {
        "samples_per_s": rate(seen, seconds),
        "samples": seen,
        "seconds": seconds,
        "passes": passes,
        "warmup_pass_s": warmup_s,
        "batches_per_pass": len(loader),
    }


def build_model(config: BenchConfig, stats: dict):
    """The model ``config`` names, built as the train stage builds it (seeded with ``config.seed``)."""
    from transformers import set_seed

    set_seed(config.seed)
    params = {
        "model": {"name": config.model, "backbone": config.backbone, "image_size": config.model_image_size},
        "data": {"n_spectra": config.n_spectra, "spectrum_length": config.spectra_length, "grid": list(config.grid)},
    }
    return build_training_model(params, stats)


def _adamw(model):
    """Fused AdamW, as the Trainer's default optim (adamw_torch_fused) uses on CPU and GPU."""
    import torch

    try:
        return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - a device without a fused kernel
        return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)


def time_train_step(model, batch: dict, device, config: BenchConfig, precision: str) -> dict[str, Any]:
    """Forward + backward + AdamW step on one fixed on-device batch: the model's ceiling."""
    import torch

    cuda = device.type == "cuda"
    model = model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = _adamw(model)
    step_model = torch.compile(model) if config.compile else model
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()

    def step() -> None:
        with autocast:
            loss = step_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def timed(steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        return time.perf_counter() - t0

    warmup_s = timed(config.warmup_steps)
    seconds = timed(config.steps)
    samples = config.steps * int(batch["pixel_values"].shape[0])
    return {
        "samples_per_s": rate(samples, seconds),
        "samples": samples,
        "seconds": seconds,
        "steps": config.steps,
        "warmup_steps": config.warmup_steps,
        "warmup_s": warmup_s,
        "precision": precision,
        "channels_last": cuda,
        "compile": config.compile,
    }
