"""A run's data-path choices, made once and carried (pure, and light to import: the commands
make them before torch or ffcv are loaded): where JPEGs are decoded, and how a run's training
crop is named."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .. import UserError
from .constants import DECODES

if TYPE_CHECKING:
    import torch


# Set to 1, data.decode gpu runs the GPU path's code on a CPU device (its tests, and the commands
# they start, which inherit it); otherwise gpu without CUDA is a one-line error.
GPU_PATH_ON_CPU = "FFCV_INAT_GPU_PATH_ON_CPU"


def gpu_path_on_cpu() -> bool:
    """Whether $FFCV_INAT_GPU_PATH_ON_CPU lets the GPU path run on the CPU."""
    return os.environ.get(GPU_PATH_ON_CPU, "") == "1"


def auto_decode(cuda: bool) -> str:
    """What data.decode "auto" means on a machine with or without CUDA."""
    return "gpu" if cuda else "cpu"


def resolve_decode(decode: str, device: torch.device) -> str:
    """Where a run decodes its JPEGs, "cpu" or "gpu", from `data.decode` and the run's device:
    "auto" is "gpu" on CUDA, "cpu" otherwise; "gpu" without CUDA is a UserError, unless
    $FFCV_INAT_GPU_PATH_ON_CPU=1 (the tests' way to run the GPU path's code on the CPU)."""
    if decode not in DECODES:
        raise UserError(f"data.decode must be one of {', '.join(DECODES)}, got {decode!r}")
    if decode == "auto":
        return auto_decode(device.type == "cuda")
    if decode == "gpu" and device.type != "cuda" and not gpu_path_on_cpu():
        raise UserError(
            f"data.decode: gpu needs a CUDA device, and this run's device is {device.type} "
            "(use data.decode: cpu, or auto)"
        )
    return decode


def training_crop(augment: bool, crop: str) -> str:
    """The training crop as summary.json and bench rows name it: the decoder, or "center"
    without augmentation."""
    return crop if augment else "center"
