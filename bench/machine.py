"""The machine a figure was measured on, described once: its facts (`environment`, the columns
every results row starts with) and the ways the bench names it, all from those facts:

    machine_name(env)      in sentences and tables: "NVIDIA H100 80GB HBM3", "devbox (CPU x2, no GPU)"
    describe_machine(env)  in a report's header: host, CPUs, GPU, versions, time
    machine_label(env)     in bench/results/ file names: "h100", "cpu-2core"

`env` is `environment()`'s dict or a results row (a dict or a pandas row with those columns).
"""

from __future__ import annotations

import datetime
import os
import platform
import socket
from typing import Any, Mapping

ENVIRONMENT_COLUMNS = [
    "timestamp",
    "host",
    "cpu_count",
    "gpu",
    "gpu_count",
    "python",
    "torch",
    "torchvision",
    "ffcv",
]

# Words of a GPU's name that say who made it or its product line, not which card it is.
_MAKER_WORDS = {"nvidia", "amd", "intel", "tesla", "geforce", "quadro", "radeon", "instinct"}
# Series words that only name a card together with the model after them (RTX 4090, RTX A6000).
_SERIES_WORDS = {"rtx", "gtx", "titan"}


def environment() -> dict[str, Any]:
    """Facts about this machine that a figure is meaningless without."""
    import torch

    from ffcv_inat.environment import package_version

    cuda = torch.cuda.is_available()
    return {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if cuda else "none",
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": package_version("torchvision") or "not installed",
        "ffcv": package_version("ffcv") or "not installed",
    }


def is_cpu_device(gpu: object) -> bool:
    """The results rows' gpu column says "none" for a CPU-only machine (also accepted: "cpu")."""
    return str(gpu).strip().lower() in ("none", "cpu")


def card_name(gpu: object) -> str | None:
    """A short name of a GPU card from its full name (torch.cuda.get_device_name, a results row's
    `gpu`): "NVIDIA H100 80GB HBM3" -> "H100", "NVIDIA A100-SXM4-40GB" -> "A100",
    "NVIDIA GeForce RTX 4090" -> "RTX 4090". None for no GPU ("none", "cpu") or no name ("", NaN).
    """
    text = "" if gpu is None else str(gpu).strip()
    if not text or text.lower() == "nan" or is_cpu_device(text):
        return None
    words = [w for w in text.split() if w.lower() not in _MAKER_WORDS] or text.split()
    first = words[0].split("-")[0]
    if first.lower() in _SERIES_WORDS and len(words) > 1:
        return f"{first} {words[1].split('-')[0]}"
    return first


def machine_name(env: Mapping) -> str:
    """The GPU's full name, or "<host> (CPU x<n>, no GPU)" for a machine without one."""
    if is_cpu_device(env["gpu"]):
        return f"{env['host']} (CPU x{env['cpu_count']}, no GPU)"
    return str(env["gpu"])


def describe_machine(env: Mapping) -> str:
    """Host, CPUs, GPU, the versions that matter and when: a report's machine line."""
    return (
        f"{env['host']}, {env['cpu_count']} CPUs, GPU {env['gpu']}; torch {env['torch']}, "
        f"torchvision {env['torchvision']}, ffcv {env['ffcv']}; {env['timestamp']}"
    )


def machine_label(env: Mapping) -> str:
    """How bench/results/ file names name a machine (`<label>_<date>_<what>.txt`): the card's
    short name in lower case ("h100"), or "cpu-<n>core" for a machine without a GPU."""
    card = card_name(env["gpu"])
    return card.lower().replace(" ", "-") if card else f"cpu-{env['cpu_count'] or 0}core"
