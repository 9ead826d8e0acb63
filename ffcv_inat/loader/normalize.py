"""Normalisation, decided in one place: every loader of this package hands out the model's input.

Where it happens depends on the path (`presets` and `factory` choose): on a GPU, the CPU path
normalises inside ffcv's pipeline after ToDevice (ffcv's NormalizeImage, float16, as
ffcv-imagenet does); on the CPU it cannot (ffcv's JIT NormalizeImage after the non-JIT
ToTensor/ToTorchImage makes the Loader hang, ffcv issue #396), so the loader's epoch applies
`normalize` in torch; the GPU path's `gpu.device_decode.finish` normalises with `imagenet_stats`.
A consumer (the training step, the evaluation, the model bench) only casts with `model_input`.
"""

from __future__ import annotations

import torch

from .constants import IMAGENET_MEAN, IMAGENET_STD

_stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def imagenet_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet's mean and std in levels of 255, float32 (1, 3, 1, 1) on `device` (made once)."""
    if device not in _stats:
        _stats[device] = (
            torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1),
            torch.tensor(IMAGENET_STD, dtype=torch.float32, device=device).view(1, 3, 1, 1),
        )
    return _stats[device]


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW pixels -> normalised float32, channels-last (the CPU path on the CPU)."""
    mean, std = imagenet_stats(images.device)
    return ((images.float() - mean) / std).contiguous(memory_format=torch.channels_last)


def model_input(images: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """A loader batch as the model takes it, in training, evaluation and the model bench alike:
    autocast takes the loader's float16 (or the GPU path's dtype) as it is; an fp32 model needs
    float32."""
    return images.float() if precision == "fp32" and images.dtype != torch.float32 else images
