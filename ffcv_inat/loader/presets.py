"""The CPU path's ffcv pipelines, one function per mode, as ffcv-imagenet's create_*_loader
write them out: what each image and label goes through between the beton and the model.

    train (seeded)   SeededRandomResizedCropDecoder (crop + flip of crops.crop_box)  -> to_model
    train (ffcv)     RandomResizedCropRGBImageDecoder, RandomHorizontalFlip           -> to_model
    eval / no aug.   CenterCropDecoder (crops.center_box, ffcv's centre crop)         -> to_model
                     (ours, seeded and centre, decode as `batch_decode` says: a dynamic
                     split of the batch between threads, one decode buffer per thread)
    to_model         ToTensor, ToTorchImage (channels-last uint8), and on a GPU ToDevice before
                     it and NormalizeImage (float16) after; on the CPU the loader normalises in
                     torch (`normalize`)
    labels           IntDecoder, ToTensor, Squeeze(1), and on a GPU ToDevice

The GPU path's (`gpu.device_loader`) image pipeline is its bytes op alone; its labels skip ToDevice.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch
from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import RandomResizedCropRGBImageDecoder
from ffcv.transforms import NormalizeImage, RandomHorizontalFlip, Squeeze, ToDevice, ToTensor, ToTorchImage

from .center_decoder import CenterCropDecoder
from .constants import IMAGENET_MEAN, IMAGENET_STD
from .normalize import normalize
from .seeded_decoder import SeededRandomResizedCropDecoder


class ImagePipeline(NamedTuple):
    decoder: object  # the first op: ffcv recognises it as the field's decoder
    ops: list  # the whole pipeline, decoder included
    finish: Callable[[torch.Tensor], torch.Tensor] | None  # applied by the loader's epoch, in torch


def seeded_train(res: int, seed: int, device: torch.device) -> ImagePipeline:
    decoder = SeededRandomResizedCropDecoder((res, res), seed=seed)  # it flips too
    return _to_model(decoder, [decoder], device)


def ffcv_train(res: int, device: torch.device) -> ImagePipeline:
    decoder = RandomResizedCropRGBImageDecoder((res, res))
    return _to_model(decoder, [decoder, RandomHorizontalFlip()], device)


def center(res: int, ratio: float, device: torch.device) -> ImagePipeline:
    decoder = CenterCropDecoder((res, res), ratio=ratio)
    return _to_model(decoder, [decoder], device)


def _to_model(decoder, ops: list, device: torch.device) -> ImagePipeline:
    if device.type == "cuda":
        ops = ops + [ToTensor(), ToDevice(device, non_blocking=True), ToTorchImage()]
        return ImagePipeline(
            decoder, ops + [NormalizeImage(np.array(IMAGENET_MEAN), np.array(IMAGENET_STD), np.float16)], None
        )
    # No ToDevice on the CPU: it would copy every batch into a second set of batch slots (as
    # large as the decoder's) to land where it already is.
    return ImagePipeline(decoder, ops + [ToTensor(), ToTorchImage()], normalize)  # ffcv #396: see normalize's module


def labels(device: torch.device | None) -> list:
    """int labels as a 1-d tensor, on `device` (None: left on the CPU, for the GPU path's thread;
    no copy to the CPU either). Squeeze(1), not Squeeze(): a last batch of one label would become a 0-d tensor,
    and ffcv's ToDevice then fails on its shape[0] in the loading thread."""
    ops = [IntDecoder(), ToTensor(), Squeeze(1)]
    return ops if device is None or device.type != "cuda" else ops + [ToDevice(device, non_blocking=True)]
