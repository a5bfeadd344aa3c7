"""``metallo bench``: input-pipeline and training-step throughput, old pipeline vs Metallo's.

One run on one machine measures four things over the same synthetic samples:

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
(d) ``trainer_loop``: a short :class:`~metallo.training.train.MetalloTrainer` run (no eval, no
    saving, ``report_to: none``) on the same data; samples/s over the steps after the warm-up.

The data set is synthesised into a temporary folder with :func:`metallo.data.synthesize.synthesize`
and converted with Metallo's own ingest/convert, so (a) and (b) read the same samples.
``--convert-scaling`` instead measures the convert stage alone at N and 4N samples (images/s and
peak RSS, each run in a fresh subprocess).

    python -m metallo.bench --out bench.json                 # CPU demo sizes, well under a minute
    python -m metallo.bench --samples 2048 --image-size 300 --model-image-size 300 \\
        --spectra-length 1600 --batch-size 256 --steps 50 --workers 16 --out bench.json   # GPU
    python -m metallo.bench --convert-scaling --samples 150 --image-size 300 --spectra-length 1600

See docs/performance.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from metallo.errors import MetalloError, exit_on_error

#: Geometry of the original system: resize the shorter side to 336, centre-crop 300.
REFERENCE_RESIZE, REFERENCE_CROP = 336, 300
#: Spectra per sample and their grid (fixed by the data contract's defaults).
N_SPECTRA, GRID = 24, (6, 4)
#: The models' default training resolution (MetalloNetConfig / ToyNetConfig ``image_size``).
MODEL_DEFAULT_IMAGE_SIZE = 128

SECTIONS = {
    "old_png_pipeline": "(a) old pipeline: PNG + PIL/torchvision per sample",
    "metallo_input_pipeline": "(b) Metallo input: uint8 memmap -> device -> processor",
    "train_step_on_device": "(c) training step, batch already on device (ceiling)",
    "trainer_loop": "(d) MetalloTrainer loop (real training)",
}

DEFAULTS = {
    "samples": 64,
    "image_size": 96,
    "spectra_length": 400,
    "batch_size": 16,
    "model": "metallonet",
    "backbone": "resnet18",
    "steps": 5,
    "warmup_steps": 2,
    "passes": 3,
    "workers": 0,
    "device": "auto",
    "precision": "auto",
    "seed": 0,
    "scaling_factor": 4,
    "convert_workers": 0,
}


# ------------------------------------------------------------------------------------------------
# machine, device, timing
# ------------------------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info() -> dict[str, Any]:
    """CPU model and cores, memory, library versions and the GPU (if any)."""
    import torch
    import torchvision
    import transformers

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "memory_gb": _memory_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers.__version__,
        "cuda_available": torch.cuda.is_available(),
        "gpu": None,
        "cuda": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
        # other processes compete for the cores: a load average above the core count means noisy numbers
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
                    gpu_memory_gb=round(props.total_memory / 1024**3, 1),
                    bf16_supported=bool(torch.cuda.is_bf16_supported()))
    return info


def resolve_device(name: str):
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise MetalloError("--device cuda was asked for, but torch sees no CUDA GPU; use --device auto or cpu.")
    if name not in ("cpu", "cuda"):
        raise MetalloError(f"--device must be auto, cpu or cuda; got {name!r}.")
    return torch.device(name)


def resolve_precision(name: str, device) -> str:
    """``auto`` → bf16 autocast on a GPU that supports it, else fp32 (as the train stage does)."""
    import torch

    if name == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if name not in ("bf16", "fp32"):
        raise MetalloError(f"--precision must be auto, bf16 or fp32; got {name!r}.")
    return name


def synchronize(device) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it (no-op on CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _rate(samples: int, seconds: float) -> float:
    return samples / seconds if seconds > 0 else math.inf


# ------------------------------------------------------------------------------------------------
# data: synthesise + ingest + convert (Metallo's own code), once for all sections
# ------------------------------------------------------------------------------------------------

def default_resize(crop: int) -> int:
    """The original 336/300 resize-to-crop ratio at another crop size."""
    return max(crop, int(round(crop * REFERENCE_RESIZE / REFERENCE_CROP)))


def prepare_data(work_dir: Path, *, samples: int, image_size: int, resize: int, spectra_length: int,
                 seed: int, workers: int | None) -> dict[str, Any]:
    """Synthesise ``samples`` PNG + .npy samples, ingest them and convert them to .npy memmaps."""
    from metallo.data.convert import Geometry, convert
    from metallo.data.ingest import validate_manifest
    from metallo.data.synthesize import synthesize

    raw, processed = work_dir / "raw", work_dir / "processed"
    processed.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.perf_counter()
    synthesize(raw, seed=seed, samples_per_slice={"1": samples}, image_size=image_size, n_spectra=N_SPECTRA,
               spectrum_length=spectra_length, grid=GRID, workers=workers, progress=False)
    timings["synthesize_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = validate_manifest(raw, spectra_shape=(N_SPECTRA, spectra_length), workers=workers, show_progress=False)
    timings["ingest_s"] = time.perf_counter() - t0
    if len(result.rejected):
        raise MetalloError(f"bench: {len(result.rejected)} synthetic samples were rejected by ingest:\n"
                           f"{result.rejected.head().to_string()}")
    t0 = time.perf_counter()
    table = convert(result.accepted, raw, processed, geometry=Geometry(resize, image_size),
                    spectra_shape=(N_SPECTRA, spectra_length), workers=workers, show_progress=False)
    timings["convert_s"] = time.perf_counter() - t0
    timings["convert_images_per_s"] = _rate(len(table), timings["convert_s"])
    return {"raw": raw, "processed": processed, "table": table, "timings": timings}


def data_statistics(processed: Path, labels: np.ndarray) -> dict[str, Any]:
    """Normalisation statistics over all rows (the split stage's function; the bench has no split)."""
    from metallo.data.split import train_statistics

    images = np.load(processed / "images.npy", mmap_mode="r")
    spectra = np.load(processed / "spectra.npy", mmap_mode="r")
    return train_statistics(images, spectra, labels, np.arange(len(labels)))


# ------------------------------------------------------------------------------------------------
# (a) the original per-sample PNG pipeline
# ------------------------------------------------------------------------------------------------

class PngDataset:
    """The original system's Dataset: PIL decode + torchvision transforms per sample, on the host."""

    def __init__(self, raw_dir: str | os.PathLike, images: list[str], spectra: list[str], labels: np.ndarray,
                 *, resize: int, crop: int, mean: list[float], std: list[float]):
        self.raw_dir = Path(raw_dir)
        self.images, self.spectra = list(images), list(spectra)
        self.labels = np.asarray(labels, dtype=np.float32)
        self.resize, self.crop, self.mean, self.std = int(resize), int(crop), list(mean), list(std)
        self._transform = None

    def __len__(self) -> int:
        return len(self.images)

    def transform(self):
        if self._transform is None:  # built lazily, in each DataLoader worker
            from torchvision import transforms as T

            self._transform = T.Compose([T.ToTensor(), T.Resize(self.resize), T.CenterCrop(self.crop),
                                         T.Normalize(self.mean, self.std)])
        return self._transform

    def __getitem__(self, i: int) -> dict:
        import torch
        from PIL import Image

        with Image.open(self.raw_dir / self.images[i]) as image:
            pixels = self.transform()(image.convert("RGB"))
        spectra = torch.from_numpy(np.load(self.raw_dir / self.spectra[i], allow_pickle=False).astype(np.float32))
        return {"pixel_values": pixels, "spectra": spectra, "labels": torch.tensor(self.labels[i])}


def _loader(dataset, *, batch_size: int, workers: int, device):
    from torch.utils.data import DataLoader, default_collate

    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                      collate_fn=default_collate, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0)


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def time_input_pipeline(loader, device, *, passes: int, process=None) -> dict[str, Any]:
    """Samples/s over ``passes`` full passes after one untimed warm-up pass (workers start, caches fill)."""
    def one_pass() -> int:
        seen = 0
        for batch in loader:
            batch = _to_device(batch, device)
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
    return {"samples_per_s": _rate(seen, seconds), "samples": seen, "seconds": seconds,
            "passes": passes, "warmup_pass_s": warmup_s, "batches_per_pass": len(loader)}


# ------------------------------------------------------------------------------------------------
# (c) training step on a fixed on-device batch, (d) MetalloTrainer
# ------------------------------------------------------------------------------------------------

def build_model(name: str, *, backbone: str, image_size: int, spectra_length: int, stats: dict, seed: int):
    from transformers import set_seed

    from metallo.models import create_model

    set_seed(seed)
    try:
        return create_model(name, n_spectra=N_SPECTRA, spectrum_length=spectra_length, grid=list(GRID),
                            image_size=image_size, backbone=backbone, label_mean=stats["label"]["mean"],
                            label_std=stats["label"]["std"] or 1.0)
    except ValueError as err:
        raise MetalloError(f"bench: cannot build model {name!r}: {err}") from None


def time_train_step(model, batch: dict, device, *, steps: int, warmup_steps: int, precision: str,
                    compile: bool) -> dict[str, Any]:
    """Forward + backward + AdamW step on one fixed on-device batch: the model's ceiling."""
    import torch

    cuda = device.type == "cuda"
    model = model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    try:  # fused AdamW, as the Trainer's default optim (adamw_torch_fused) uses on CPU and GPU
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - a device without a fused kernel
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    step_model = torch.compile(model) if compile else model
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if precision == "bf16"
                else nullcontext())

    def step() -> None:
        with autocast:
            loss = step_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    for _ in range(warmup_steps):
        step()
    synchronize(device)
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    seconds = time.perf_counter() - t0
    batch_size = int(batch["pixel_values"].shape[0])
    return {"samples_per_s": _rate(steps * batch_size, seconds), "samples": steps * batch_size, "seconds": seconds,
            "steps": steps, "warmup_steps": warmup_steps, "warmup_s": warmup_s, "precision": precision,
            "channels_last": cuda, "compile": compile}


def time_trainer(model, dataset, processor, device, work_dir: Path, *, batch_size: int, steps: int,
                 warmup_steps: int, workers: int, precision: str, compile: bool, seed: int) -> dict[str, Any]:
    """A short MetalloTrainer run; samples/s between the end of the warm-up and the last step."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from metallo.training.arguments import build_training_arguments
    from metallo.processing import Augmentation
    from metallo.training.train import MetalloTrainer
    from torch.utils.data import default_collate

    marks: dict[int, float] = {}
    step_ends: list[float] = []

    class StepTimer(TrainerCallback):
        """Wall-clock at the end of each step; synchronised at the warm-up boundary and the last step only."""

        def on_train_begin(self, args, state, control, **kwargs):
            step_ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup_steps, warmup_steps + steps):
                synchronize(device)
                marks[state.global_step] = time.perf_counter()
            step_ends.append(time.perf_counter())

    train = {
        "max_steps": warmup_steps + steps, "per_device_train_batch_size": batch_size, "learning_rate": 1e-3,
        "weight_decay": 0.01, "lr_scheduler_type": "constant", "eval_strategy": "no", "save_strategy": "no",
        "logging_strategy": "no", "report_to": "none", "disable_tqdm": True, "seed": seed,
        "dataloader_num_workers": workers, "dataloader_pin_memory": device.type == "cuda",
        "dataloader_persistent_workers": workers > 0, "dataloader_drop_last": True,
        "use_cpu": device.type != "cuda", "bf16": precision == "bf16",
        "early_stopping_patience": 0, "augment": True, "compile": compile,
    }
    args, options = build_training_arguments(train, work_dir / "trainer")
    trainer = MetalloTrainer(model=model, args=args, train_dataset=dataset, data_collator=default_collate,
                             callbacks=[StepTimer()], processor=processor, grid=tuple(model.config.grid),
                             augmentation=Augmentation() if options.augment else None)
    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    t0 = time.perf_counter()
    trainer.train()
    total_s = time.perf_counter() - t0
    if warmup_steps not in marks and warmup_steps == 0:
        marks[0] = step_ends[0]
    if warmup_steps not in marks or warmup_steps + steps not in marks:
        raise MetalloError(f"bench: the trainer stopped after {trainer.state.global_step} steps, "
                           f"before {warmup_steps + steps}.")
    seconds = marks[warmup_steps + steps] - marks[warmup_steps]
    times = np.diff(step_ends)
    return {"samples_per_s": _rate(steps * batch_size, seconds), "samples": steps * batch_size, "seconds": seconds,
            "steps": steps, "warmup_steps": warmup_steps, "total_s": total_s, "precision": precision,
            "compile": compile, "augment": options.augment, "workers": workers, "channels_last": False,
            "step_ms": [round(float(t) * 1000, 2) for t in times]}


# ------------------------------------------------------------------------------------------------
# the benchmark
# ------------------------------------------------------------------------------------------------

def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.inf


def run_benchmark(*, samples: int = DEFAULTS["samples"], image_size: int = DEFAULTS["image_size"],
                  resize: int | None = None, model_image_size: int | None = None,
                  spectra_length: int = DEFAULTS["spectra_length"], batch_size: int = DEFAULTS["batch_size"],
                  model: str = DEFAULTS["model"], backbone: str = DEFAULTS["backbone"], steps: int = DEFAULTS["steps"],
                  warmup_steps: int = DEFAULTS["warmup_steps"], passes: int = DEFAULTS["passes"],
                  workers: int = DEFAULTS["workers"], device: str = DEFAULTS["device"],
                  precision: str = DEFAULTS["precision"], compile: bool = False, seed: int = DEFAULTS["seed"],
                  convert_workers: int = DEFAULTS["convert_workers"], work_dir: str | os.PathLike | None = None,
                  threads: int | None = None, sections: tuple[str, ...] = tuple(SECTIONS)) -> dict[str, Any]:
    """Run the four measurements and return the results (see the module docstring).

    ``threads`` sets ``torch.set_num_threads`` for the run (restored afterwards); None keeps torch's default.
    """
    import torch

    if threads is not None and threads < 1:
        raise MetalloError(f"--threads must be at least 1; got {threads}.")
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run_benchmark(samples=samples, image_size=image_size, resize=resize,
                              model_image_size=model_image_size, spectra_length=spectra_length,
                              batch_size=batch_size, model=model, backbone=backbone, steps=steps,
                              warmup_steps=warmup_steps, passes=passes, workers=workers, device=device,
                              precision=precision, compile=compile, seed=seed, convert_workers=convert_workers,
                              work_dir=work_dir, sections=sections)
    finally:
        torch.set_num_threads(previous_threads)


def _run_benchmark(*, samples: int, image_size: int, resize: int | None, model_image_size: int | None,
                   spectra_length: int, batch_size: int, model: str, backbone: str, steps: int, warmup_steps: int,
                   passes: int, workers: int, device: str, precision: str, compile: bool, seed: int,
                   convert_workers: int, work_dir: str | os.PathLike | None,
                   sections: tuple[str, ...]) -> dict[str, Any]:
    import torch

    from metallo.data.dataset import MetalloDataset
    from metallo.processing import MetalloProcessor

    resize = default_resize(image_size) if resize is None else int(resize)
    if model_image_size is None:
        model_image_size = min(MODEL_DEFAULT_IMAGE_SIZE, image_size)
    for name, value, low in (("--samples", samples, 1), ("--image-size", image_size, 8),
                             ("--batch-size", batch_size, 1), ("--steps", steps, 1),
                             ("--warmup-steps", warmup_steps, 0), ("--passes", passes, 1),
                             ("--workers", workers, 0), ("--spectra-length", spectra_length, 8),
                             ("--model-image-size", model_image_size, 32)):
        if value < low:
            raise MetalloError(f"{name} must be at least {low}; got {value}.")
    if resize < image_size:
        raise MetalloError(f"--resize ({resize}) must be at least --image-size ({image_size}), the crop.")
    if samples < batch_size:
        raise MetalloError(f"--samples ({samples}) must be at least --batch-size ({batch_size}).")
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise MetalloError(f"unknown bench section(s) {unknown}; choose from {list(SECTIONS)}.")
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)

    config = {"samples": samples, "image_size": image_size, "resize": resize, "crop": image_size,
              "model_image_size": model_image_size, "n_spectra": N_SPECTRA, "spectra_length": spectra_length,
              "grid": list(GRID), "batch_size": batch_size, "model": model, "backbone": backbone, "steps": steps,
              "warmup_steps": warmup_steps, "passes": passes, "workers": workers, "device": str(dev),
              "precision": precision, "compile": compile, "seed": seed, "torch_threads": torch.get_num_threads()}
    result: dict[str, Any] = {"benchmark": "metallo bench", "created": _now(), "machine": machine_info(),
                              "config": config, "sections": {}}
    owned = work_dir is None
    root = Path(tempfile.mkdtemp(prefix="metallo-bench-")) if owned else Path(work_dir)
    root.mkdir(parents=True, exist_ok=True)
    try:
        data = prepare_data(root, samples=samples, image_size=image_size, resize=resize,
                            spectra_length=spectra_length, seed=seed, workers=convert_workers or None)
        result["setup"] = data["timings"]
        table = data["table"]
        labels = table["dos"].to_numpy(dtype=np.float32)
        stats = data_statistics(data["processed"], labels)
        processor = MetalloProcessor.from_stats(stats, image_size=model_image_size, resize=resize, crop=image_size)
        dataset = MetalloDataset(data["processed"] / "images.npy", data["processed"] / "spectra.npy",
                                 np.arange(len(table)), labels, table["sample_id"].tolist())
        out = result["sections"]

        if "old_png_pipeline" in sections:
            old = PngDataset(data["raw"], table["image"].tolist(), table["spectra"].tolist(), labels, resize=resize,
                             crop=image_size, mean=stats["image"]["mean"], std=stats["image"]["std"])
            loader = _loader(old, batch_size=batch_size, workers=workers, device=dev)
            out["old_png_pipeline"] = {**time_input_pipeline(loader, dev, passes=passes), "workers": workers,
                                       "output_size": image_size}
            del loader

        if "metallo_input_pipeline" in sections:
            loader = _loader(dataset, batch_size=batch_size, workers=workers, device=dev)
            out["metallo_input_pipeline"] = {**time_input_pipeline(loader, dev, passes=passes, process=processor),
                                             "workers": workers, "output_size": model_image_size}
            del loader

        if "train_step_on_device" in sections:
            from torch.utils.data import default_collate

            first = default_collate([dataset[i] for i in range(batch_size)])  # the first batch, as (b) delivers it
            batch = processor(_to_device(first, dev))
            net = build_model(model, backbone=backbone, image_size=model_image_size, spectra_length=spectra_length,
                              stats=stats, seed=seed)
            out["train_step_on_device"] = time_train_step(net, batch, dev, steps=steps, warmup_steps=warmup_steps,
                                                          precision=precision, compile=compile)
            del net, batch, first
            if dev.type == "cuda":
                torch.cuda.empty_cache()

        if "trainer_loop" in sections:
            net = build_model(model, backbone=backbone, image_size=model_image_size, spectra_length=spectra_length,
                              stats=stats, seed=seed)
            out["trainer_loop"] = time_trainer(net, dataset, processor, dev, root, batch_size=batch_size, steps=steps,
                                               warmup_steps=warmup_steps, workers=workers, precision=precision,
                                               compile=compile, seed=seed)
            del net
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)

    rate = {k: v["samples_per_s"] for k, v in result["sections"].items()}
    ratios = {}
    pairs = {
        "input_speedup_b_over_a": ("metallo_input_pipeline", "old_png_pipeline"),
        "trainer_efficiency_d_over_c": ("trainer_loop", "train_step_on_device"),
        "input_headroom_b_over_c": ("metallo_input_pipeline", "train_step_on_device"),
        "old_input_headroom_a_over_c": ("old_png_pipeline", "train_step_on_device"),
    }
    for key, (num, den) in pairs.items():
        if num in rate and den in rate:
            ratios[key] = _ratio(rate[num], rate[den])
    result["ratios"] = ratios
    return result


# ------------------------------------------------------------------------------------------------
# convert scaling
# ------------------------------------------------------------------------------------------------

_CONVERT_CHILD = r"""
import json, resource, sys, time
spec = json.loads(sys.argv[1])
import pandas as pd
from metallo.data.convert import Geometry, convert
samples = pd.read_parquet(spec["samples"]).head(spec["n"])
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
convert(samples, spec["raw"], spec["out"], geometry=Geometry(spec["resize"], spec["crop"]),
        spectra_shape=tuple(spec["spectra_shape"]), workers=spec["workers"], show_progress=False)
seconds = time.perf_counter() - t0
print("BENCH-RESULT " + json.dumps({
    "seconds": seconds,
    "baseline_rss_kb": baseline,
    "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "peak_rss_workers_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
}))
"""


def _convert_in_subprocess(spec: dict) -> dict:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-c", _CONVERT_CHILD, json.dumps(spec)], capture_output=True, text=True,
                          env=env, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    if proc.returncode or not lines:
        raise MetalloError(f"bench: the convert subprocess failed (status {proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("BENCH-RESULT "):])


def run_convert_scaling(*, samples: int = 150, factor: int = DEFAULTS["scaling_factor"],
                        image_size: int = REFERENCE_CROP, resize: int | None = None,
                        spectra_length: int = 1600, workers: int = DEFAULTS["convert_workers"],
                        seed: int = DEFAULTS["seed"], work_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Convert throughput (images/s) and peak RSS at ``samples`` and ``factor × samples``.

    The raw folder (``factor × samples``) is synthesised and ingested once; each convert then
    runs in a fresh ``python -c`` subprocess over the first N rows and reports its own peak RSS
    (``ru_maxrss`` of itself and of its worker processes).
    """
    import pandas as pd  # noqa: F401 - parquet support is needed below

    from metallo.data.ingest import validate_manifest
    from metallo.data.synthesize import synthesize
    from metallo.parallel import resolve_workers

    resize = default_resize(image_size) if resize is None else int(resize)
    if samples < 1 or factor < 2:
        raise MetalloError(f"--samples must be >= 1 and --scaling-factor >= 2; got {samples} and {factor}.")
    if resize < image_size:
        raise MetalloError(f"--resize ({resize}) must be at least --image-size ({image_size}), the crop.")
    sizes = [samples, samples * factor]
    config = {"sizes": sizes, "image_size": image_size, "resize": resize, "crop": image_size,
              "n_spectra": N_SPECTRA, "spectra_length": spectra_length, "workers": workers,
              "workers_resolved": resolve_workers(workers or None), "seed": seed}
    result: dict[str, Any] = {"benchmark": "metallo bench --convert-scaling", "created": _now(),
                              "machine": machine_info(), "config": config, "runs": []}
    owned = work_dir is None
    root = Path(tempfile.mkdtemp(prefix="metallo-bench-convert-")) if owned else Path(work_dir)
    root.mkdir(parents=True, exist_ok=True)
    try:
        raw = root / "raw"
        t0 = time.perf_counter()
        synthesize(raw, seed=seed, samples_per_slice={"1": sizes[-1]}, image_size=image_size, n_spectra=N_SPECTRA,
                   spectrum_length=spectra_length, grid=GRID, workers=workers or None, progress=False)
        result["synthesize_s"] = time.perf_counter() - t0
        accepted = validate_manifest(raw, spectra_shape=(N_SPECTRA, spectra_length), workers=workers or None,
                                     show_progress=False).accepted
        if len(accepted) != sizes[-1]:
            raise MetalloError(f"bench: ingest accepted {len(accepted)} of {sizes[-1]} synthetic samples.")
        accepted.to_parquet(root / "samples.parquet")
        row_mb = (image_size * image_size * 3 + N_SPECTRA * spectra_length * 4) / 1024**2
        for n in sizes:
            out = root / f"processed-{n}"
            out.mkdir()
            child = _convert_in_subprocess({"samples": str(root / "samples.parquet"), "n": n, "raw": str(raw),
                                            "out": str(out), "resize": resize, "crop": image_size,
                                            "spectra_shape": [N_SPECTRA, spectra_length], "workers": workers})
            shutil.rmtree(out, ignore_errors=True)
            result["runs"].append({
                "samples": n,
                "seconds": child["seconds"],
                "images_per_s": _rate(n, child["seconds"]),
                "peak_rss_mb": child["peak_rss_kb"] / 1024,
                "peak_rss_workers_mb": child["peak_rss_workers_kb"] / 1024,
                "baseline_rss_mb": child["baseline_rss_kb"] / 1024,
                "rss_growth_mb": (child["peak_rss_kb"] - child["baseline_rss_kb"]) / 1024,
                "output_mb": n * row_mb,
            })
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)
    small, large = result["runs"]
    result["peak_rss_ratio"] = _ratio(large["peak_rss_mb"], small["peak_rss_mb"])
    result["peak_rss_workers_ratio"] = _ratio(large["peak_rss_workers_mb"], small["peak_rss_workers_mb"])
    result["output_ratio"] = _ratio(large["output_mb"], small["output_mb"])
    return result


# ------------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------------

def _fmt(value: float, digits: int = 1) -> str:
    return "inf" if not math.isfinite(value) else f"{value:,.{digits}f}"


def _print_table(title: str, columns: list[str], rows: list[list[str]], notes: list[str]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency, plain text is the fallback
        widths = [max(len(str(r[i])) for r in [columns, *rows]) for i in range(len(columns))]
        print(title)
        for row in [columns, *rows]:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
        for note in notes:
            print(note)
        return
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
    gpu = machine.get("gpu") or "no GPU"
    return (f"{machine['cpu_model']}, {machine['cpu_cores_usable']} cores, {gpu}; torch {machine['torch']}, "
            f"transformers {machine['transformers']}")


def print_report(result: dict) -> None:
    """The results as a table (rich when available) plus the ratios."""
    if "runs" in result:
        cfg = result["config"]
        rows = [[str(r["samples"]), _fmt(r["seconds"], 2), _fmt(r["images_per_s"]), _fmt(r["baseline_rss_mb"], 0),
                 _fmt(r["peak_rss_mb"], 0), _fmt(r["rss_growth_mb"], 1), _fmt(r["peak_rss_workers_mb"], 0),
                 _fmt(r["output_mb"], 0)] for r in result["runs"]]
        title = f"convert scaling: {cfg['crop']}x{cfg['crop']} crop, spectra {cfg['n_spectra']}x{cfg['spectra_length']}"
        _print_table(title,
                     ["samples", "seconds", "images/s", "RSS before MB", "peak RSS MB", "growth MB",
                      "worker peak RSS MB", "output MB"], rows,
                     [f"peak RSS ratio {_fmt(result['peak_rss_ratio'], 2)}x for {_fmt(result['output_ratio'], 1)}x "
                      f"the output", f"machine: {machine_line(result['machine'])}"])
        return
    cfg = result["config"]
    rows = []
    for key, label in SECTIONS.items():
        if key in result["sections"]:
            sec = result["sections"][key]
            rows.append([label, _fmt(sec["samples_per_s"]), str(sec["samples"]), _fmt(sec["seconds"], 3)])
    labels = {
        "input_speedup_b_over_a": "(b)/(a) input pipeline speed-up",
        "trainer_efficiency_d_over_c": "(d)/(c) trainer loop vs on-device ceiling",
        "input_headroom_b_over_c": "(b)/(c) Metallo input vs training step",
        "old_input_headroom_a_over_c": "(a)/(c) old input vs training step",
    }
    notes = [f"{labels[k]}: {_fmt(v, 2)}x" for k, v in result["ratios"].items()]
    notes.append(f"machine: {machine_line(result['machine'])}")
    title = (f"metallo bench: {cfg['model']}/{cfg['backbone']}, {cfg['samples']} samples, crop {cfg['crop']} -> "
             f"model {cfg['model_image_size']}, spectra {cfg['n_spectra']}x{cfg['spectra_length']}, batch "
             f"{cfg['batch_size']}, {cfg['workers']} workers, {cfg['device']} {cfg['precision']}"
             f"{' compiled' if cfg['compile'] else ''}")
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(result), indent=2) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the bench options to ``parser`` (used by ``metallo bench`` and ``python -m metallo.bench``)."""
    d = DEFAULTS
    sizes = parser.add_argument_group("sizes")
    sizes.add_argument("--samples", type=int, default=None,
                       help=f"synthetic samples (default {d['samples']}; the base N for --convert-scaling, "
                            "default 150 there)")
    sizes.add_argument("--image-size", type=int, default=None,
                       help=f"stored crop side S; the PNGs are synthesised at S (default {d['image_size']}; "
                            f"{REFERENCE_CROP} for --convert-scaling; the pipeline's own is {REFERENCE_CROP})")
    sizes.add_argument("--resize", type=int, default=None,
                       help=f"shorter side before the crop (default round(S*{REFERENCE_RESIZE}/{REFERENCE_CROP}))")
    sizes.add_argument("--model-image-size", type=int, default=None,
                       help=f"side the model sees (default min({MODEL_DEFAULT_IMAGE_SIZE}, S); 300 = full resolution)")
    sizes.add_argument("--spectra-length", type=int, default=None,
                       help=f"points per spectrum, {N_SPECTRA} spectra per sample (default {d['spectra_length']}; "
                            "1600 for --convert-scaling)")
    sizes.add_argument("--batch-size", type=int, default=d["batch_size"], help=f"default {d['batch_size']}")
    model = parser.add_argument_group("model and loop")
    model.add_argument("--model", choices=("toynet", "metallonet"), default=d["model"], help=f"default {d['model']}")
    model.add_argument("--backbone", choices=("resnet18", "resnet50"), default=d["backbone"],
                       help=f"default {d['backbone']}")
    model.add_argument("--steps", type=int, default=d["steps"], help=f"timed training steps (default {d['steps']})")
    model.add_argument("--warmup-steps", type=int, default=d["warmup_steps"],
                       help=f"untimed steps first (default {d['warmup_steps']}; raise it with --compile)")
    model.add_argument("--passes", type=int, default=d["passes"],
                       help=f"timed passes over the data for (a) and (b), after one warm-up pass "
                            f"(default {d['passes']})")
    model.add_argument("--workers", type=int, default=d["workers"],
                       help=f"DataLoader worker processes for (a), (b) and (d) (default {d['workers']})")
    model.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d["device"],
                       help="auto = cuda when available (default)")
    model.add_argument("--precision", choices=("auto", "bf16", "fp32"), default=d["precision"],
                       help="auto = bf16 autocast on a bf16-capable GPU, else fp32 (default)")
    model.add_argument("--compile", action="store_true", help="torch.compile the model in (c) and (d)")
    model.add_argument("--threads", type=int, default=None,
                       help="torch.set_num_threads for the run (default: torch's own, one per core). On a "
                            "machine shared with other busy processes, 1 avoids OpenMP spin-wait stalls")
    model.add_argument("--seed", type=int, default=d["seed"])
    other = parser.add_argument_group("convert scaling and output")
    other.add_argument("--convert-scaling", action="store_true",
                       help="measure only the convert stage at N and factor*N samples (images/s, peak RSS)")
    other.add_argument("--scaling-factor", type=int, default=d["scaling_factor"],
                       help=f"the larger size is factor*N (default {d['scaling_factor']})")
    other.add_argument("--convert-workers", type=int, default=d["convert_workers"],
                       help="processes for synthesize/ingest/convert (default 0 = all cores)")
    other.add_argument("--work-dir", default=None, help="keep the generated data here (default: a temporary folder)")
    other.add_argument("--out", default=None, help="write the results as JSON to this file (e.g. bench.json)")
    return parser


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Run what ``args`` (parsed with :func:`add_arguments`) asks for, print the table, write ``--out``."""
    if args.convert_scaling:
        result = run_convert_scaling(samples=args.samples or 150, factor=args.scaling_factor,
                                     image_size=args.image_size or REFERENCE_CROP, resize=args.resize,
                                     spectra_length=args.spectra_length or 1600, workers=args.convert_workers,
                                     seed=args.seed, work_dir=args.work_dir)
    else:
        result = run_benchmark(samples=args.samples or DEFAULTS["samples"],
                               image_size=args.image_size or DEFAULTS["image_size"],
                               resize=args.resize, model_image_size=args.model_image_size,
                               spectra_length=args.spectra_length or DEFAULTS["spectra_length"],
                               batch_size=args.batch_size, model=args.model, backbone=args.backbone, steps=args.steps,
                               warmup_steps=args.warmup_steps, passes=args.passes, workers=args.workers,
                               device=args.device, precision=args.precision, compile=args.compile, seed=args.seed,
                               convert_workers=args.convert_workers, work_dir=args.work_dir, threads=args.threads)
    print_report(result)
    if args.out:
        path = write_result(result, args.out)
        print(f"bench: results -> {path}")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m metallo.bench",
        description="Input-pipeline and training-step throughput: the old per-sample PNG pipeline vs Metallo's "
                    "uint8 memmaps + on-device preprocessing, the on-device training step and the MetalloTrainer loop.")
    return add_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(None if argv is None else [str(a) for a in argv])
    with exit_on_error():
        run_from_args(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
