"""The timed measurements: an input pipeline's passes, the on-device training step, the trainer loop.

Each returns a dict with at least ``samples_per_s``, ``samples`` and ``seconds`` (the timed part,
after an untimed warm-up).
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from metallo.bench.config import BenchConfig
from metallo.bench.data import rate, to_device
from metallo.bench.machine import synchronize
from metallo.errors import MetalloError


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
    return {"samples_per_s": rate(seen, seconds), "samples": seen, "seconds": seconds,
            "passes": passes, "warmup_pass_s": warmup_s, "batches_per_pass": len(loader)}


def build_model(config: BenchConfig, stats: dict):
    """The model ``config`` names, built as the train stage builds it (seeded with ``config.seed``)."""
    from transformers import set_seed

    from metallo.training.train import build_model as build_training_model

    set_seed(config.seed)
    params = {"model": {"name": config.model, "backbone": config.backbone, "image_size": config.model_image_size},
              "data": {"n_spectra": config.n_spectra, "spectrum_length": config.spectra_length,
                       "grid": list(config.grid)}}
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
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if precision == "bf16"
                else nullcontext())

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
    return {"samples_per_s": rate(samples, seconds), "samples": samples, "seconds": seconds,
            "steps": config.steps, "warmup_steps": config.warmup_steps, "warmup_s": warmup_s,
            "precision": precision, "channels_last": cuda, "compile": config.compile}


def _step_timer(device, marked: tuple[int, int]):
    """A TrainerCallback with the wall-clock at the start and after every step; synchronised at ``marked`` steps."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.marks: dict[int, float] = {}
            self.step_ends: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.step_ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in marked:
                synchronize(device)
                self.marks[state.global_step] = time.perf_counter()
            self.step_ends.append(time.perf_counter())

    return StepTimer()


def _trainer_settings(config: BenchConfig, device, precision: str) -> dict[str, Any]:
    """``train:`` params of a short run: no evaluation, saving, logging or reporting."""
    return {
        "max_steps": config.warmup_steps + config.steps, "per_device_train_batch_size": config.batch_size,
        "learning_rate": 1e-3, "weight_decay": 0.01, "lr_scheduler_type": "constant", "eval_strategy": "no",
        "save_strategy": "no", "logging_strategy": "no", "report_to": "none", "disable_tqdm": True,
        "seed": config.seed, "dataloader_num_workers": config.workers,
        "dataloader_pin_memory": device.type == "cuda", "dataloader_persistent_workers": config.workers > 0,
        "dataloader_drop_last": True, "use_cpu": device.type != "cuda", "bf16": precision == "bf16",
        "early_stopping_patience": 0, "augment": True, "compile": config.compile,
    }


def time_trainer(model, dataset, processor, device, work_dir: Path, config: BenchConfig,
                 precision: str) -> dict[str, Any]:
    """A short MetalloTrainer run; samples/s between the end of the warm-up and the last step."""
    from torch.utils.data import default_collate
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from metallo.processing import Augmentation
    from metallo.training.arguments import build_training_arguments
    from metallo.training.train import MetalloTrainer

    first, last = config.warmup_steps, config.warmup_steps + config.steps
    timer = _step_timer(device, (first, last))
    args, options = build_training_arguments(_trainer_settings(config, device, precision), work_dir / "trainer")
    trainer = MetalloTrainer(model=model, args=args, train_dataset=dataset, data_collator=default_collate,
                             callbacks=[timer], processor=processor, grid=tuple(model.config.grid),
                             augmentation=Augmentation() if options.augment else None)
    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    t0 = time.perf_counter()
    trainer.train()
    total_s = time.perf_counter() - t0
    if first == 0:
        timer.marks.setdefault(0, timer.step_ends[0])
    if first not in timer.marks or last not in timer.marks:
        raise MetalloError(f"bench: the trainer stopped after {trainer.state.global_step} steps, before {last}.")
    seconds = timer.marks[last] - timer.marks[first]
    samples = config.steps * config.batch_size
    return {"samples_per_s": rate(samples, seconds), "samples": samples, "seconds": seconds,
            "steps": config.steps, "warmup_steps": first, "total_s": total_s, "precision": precision,
            "compile": config.compile, "augment": options.augment, "workers": config.workers,
            "channels_last": False, "step_ms": [round(float(t) * 1000, 2) for t in np.diff(timer.step_ends)]}
