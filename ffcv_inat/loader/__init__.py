"""The data path: where a training or evaluation batch comes from. Callers import from here.

    resolve_decode    `choices`: data.decode -> cpu or gpu, once per run (and the training crop's name)
    make_loader       the one factory (`factory`): a checked beton -> batches as the model takes them
      presets           the CPU path's ffcv pipelines, per mode (train seeded / ffcv, centre crop, labels)
        batch_decode      how our decoders split a batch between threads, one decode buffer each
        seeded_decoder    decode + crop + flip in ffcv's workers, the box from `crops.crop_box`
        center_decoder    the evaluation crop, ffcv's box pixel for pixel
      gpu/              the GPU path: bytes in the workers, decode + crop + normalise on the device
      beton_loader      `BetonLoader` and its `Epoch` (ends on `stop()` or a `with` block's end)
    normalize         who normalises (the loader, always) and `model_input`
    constants         ImageNet's mean and std, the crop ratio, the crop and decode choices

`ffcv_inat.config` imports the constants through this package, and importing `factory` costs
14-17 s (torch, torchvision, and ffcv, whose import compiles numba code; 3 runs on the 2-core
dev VM at load 6, against 0.2 s for the config), so everything but the constants is imported on
first use (PEP 562 `__getattr__` below); `choices` imports neither torch nor ffcv.
"""

from __future__ import annotations

import importlib

from .constants import CROPS, DECODES, DEFAULT_CROP_RATIO, IMAGENET_MEAN, IMAGENET_STD

_WHERE = {  # name -> the module of this package that defines it
    "make_loader": "factory",
    "AnyLoader": "factory",
    "resolve_decode": "choices",
    "auto_decode": "choices",
    "training_crop": "choices",
    "GPU_PATH_ON_CPU": "choices",
    "BetonLoader": "beton_loader",
    "Epoch": "beton_loader",
    "keep_alive": "beton_loader",
    "LeanOSCacheManager": "os_cache",
    "model_input": "normalize",
    "imagenet_stats": "normalize",
    "DeviceDecodeLoader": "gpu",
    "DecodeCounts": "gpu",
    "nvjpeg_backend": "gpu",
    # the GPU path's parts the checks and ceilings of bench/ work on directly
    **dict.fromkeys(
        [
            "CompressedImageBytes",
            "largest_payload",
            "read_headers",
            "payload",
            "HEADER_FIELDS",
            "RAW",
            "JPEG_BATCHED",
            "KIND_NAMES",
            "decode_images",
            "images_from_rows",
            "indexed",
        ],
        "gpu",
    ),
}

__all__ = ["CROPS", "DECODES", "DEFAULT_CROP_RATIO", "IMAGENET_MEAN", "IMAGENET_STD", *_WHERE]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
