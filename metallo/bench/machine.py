"""The machine a benchmark ran on, and the device and precision it runs with."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from metallo.errors import MetalloError
from metallo.parallel import resolve_workers
from metallo.training.arguments import bf16_supported


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

    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": resolve_workers(None),
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
        info.update(
            gpu=torch.cuda.get_device_name(0),
            gpu_count=torch.cuda.device_count(),
            gpu_memory_gb=round(props.total_memory / 1024**3, 1),
            bf16_supported=bool(torch.cuda.is_bf16_supported()),
        )
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
    if name == "auto":
        return "bf16" if bf16_supported(device.type) else "fp32"
    if name not in ("bf16", "fp32"):
        raise MetalloError(f"--precision must be auto, bf16 or fp32; got {name!r}.")
    return name


def synchronize(device) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it (no-op on CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
