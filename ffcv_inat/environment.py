"""Facts about the machine a number was measured on, and the precision rule, in one place.

Used by the trainer (summary.json), the bench (results rows) and the commands that pick a
device or a worker count, so that every file says the same thing the same way.
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import UserError, __version__
from .failures import MachineLacks

# torch is imported inside the functions that use it: `config` imports PRECISIONS from here, and
# a recipe's one-line errors must not wait for torch's import (seconds on a 2-core machine).

PRECISIONS = ("bf16", "fp16", "fp32")


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity (SLURM, cgroups, taskset), not the
    machine's count. numba refuses more threads than this (ffcv issues #357, #382)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int) -> int:
    """The config's rule: 0 = this process's share of the usable cores; larger values are capped
    at the usable cores. Under torchrun the LOCAL_WORLD_SIZE processes of a node share one CPU
    affinity, so each takes 1/LOCAL_WORLD_SIZE of it (ffcv sizes numba's and torch's thread
    pools to this number); under srun each task has an affinity of its own and no such variable."""
    cores = usable_cores()
    share = max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))
    return share if workers <= 0 else min(workers, cores)


def package_version(dist: str) -> str | None:
    """The installed distribution's version (ffcv 1.0.2's `ffcv.__version__` still says 0.0.3rc1)."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    import numpy as np
    import torch

    return {
        "ffcv_inat": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": package_version("torchvision"),
        "ffcv": package_version("ffcv"),
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None,
    }


def cpu_name() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def device_name(device, world_size: int = 1) -> str:
    """'NVIDIA H100 80GB HBM3', '8 x NVIDIA H100 ...' or 'CPU <model> (N threads)'."""
    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU {cpu_name()} ({torch.get_num_threads()} threads)"
    return f"{world_size} x {name}" if world_size > 1 else name


def resolve_device(name: str | None, option: str = "device"):
    """auto (or None) | cpu | cuda | cuda:N -> a torch.device; cuda without a GPU is a one-line
    error naming `option` (the config key or command-line flag it came from)."""
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"{option}: not a torch device: {name!r} (use auto, cpu or cuda)") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"{option} must be auto, cpu or cuda, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MachineLacks(f"{option} {name}: no CUDA GPU is visible on this machine")
    return device


def run_precision(requested: str, device) -> str:
    """What actually runs for a requested precision: the rule of the trainer and the bench.

    CPU always runs fp32 (CPU autocast is slower than fp32 for ResNet-50, and fp16 there is
    emulated). On a GPU, bf16 runs as fp16 where the card has no bf16 (pre-Ampere).
    """
    import torch

    if requested not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if device.type != "cuda" or requested == "fp32":
        return "fp32"
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        return "fp16"
    return requested


def why_precision_differs(requested: str, device) -> str:
    """Why run_precision(requested, device) is not `requested` ('' when it is)."""
    ran = run_precision(requested, device)
    if ran == requested:
        return ""
    if device.type != "cuda":
        return f"{requested} needs a CUDA GPU: on CPU everything runs {ran}"
    import torch

    return f"{requested}: {torch.cuda.get_device_name(device)} has no {requested}, so it runs {ran}"


def autocast_dtype(precision: str):
    """torch dtype for torch.autocast, or None for fp32 (autocast off)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


def input_dtype(precision: str):
    """The dtype a model running `precision` takes its input in (the GPU data path hands out
    batches in it): autocast's dtype, or float32."""
    import torch

    return autocast_dtype(precision) or torch.float32
