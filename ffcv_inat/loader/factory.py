"""FFCV loaders for training and evaluation, the way ffcv-imagenet builds them.

Images leave the pipeline as uint8 NCHW (channels-last) tensors. On a GPU they are
normalised inside the pipeline, after ToDevice, as ffcv-imagenet does. On the CPU they are
normalised in torch by `model_input`: ffcv's NormalizeImage is a JIT op, and a JIT op
after the non-JIT ToTensor/ToTorchImage makes the Loader hang (ffcv issue #396).

Training crops (`crop`, config `data.crop`): "seeded", the default, is our
`SeededRandomResizedCropDecoder` (`ffcv_inat.seeded_decoder`), whose RandomResizedCrop and flip
are a pure function of (seed, epoch, sample index, image size) (`ffcv_inat.crops`), so a run
is reproducible; "ffcv" is ffcv's RandomResizedCropRGBImageDecoder + RandomHorizontalFlip,
which draw from numba's unseeded generator (kept to compare: `ffcv-bench loader --crop`).
The epoch of the crops is always the epoch of the shuffle order (`BetonLoader.set_epoch`).

Where JPEGs are decoded (`decode`, config `data.decode`, `resolve_decode`): "cpu" decodes in
ffcv's workers as above; "gpu" is the GPU data path (`ffcv_inat.device_loader`): workers only
copy each sample's stored bytes with its crop box and flip (`ffcv_inat.jpeg_bytes`, boxes from
the same `crops` functions) and the device decodes, crops, flips and normalises; "auto" is gpu
on CUDA, cpu otherwise.

ffcv reuses its output buffers: it has batches_ahead + 2 slots, one being filled, and rewrites
a batch's slot as soon as the next batch is taken. Use a batch (or `.clone()` it) before asking
for the next; never keep a list of raw batches.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from queue import Empty

import numpy as np
import torch

from . import UserError
from .beton_integrity import check_beton
from .config import CROPS, DECODES  # training crop decoders; where JPEGs are decoded
from .environment import resolve_workers

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406]) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225]) * 255
# Evaluation crops the centre 224/256 of the image, the standard ImageNet protocol.
DEFAULT_CROP_RATIO = 224 / 256
# Test-only switch: let data.decode "gpu" run the GPU path's code with device "cpu", so CPU tests
# train and evaluate through it. Nothing else sets it.
DECODE_ON_CPU_FOR_TESTS = "FFCV_INAT_TEST_GPU_PATH_ON_CPU"


@dataclass
class BetonLoader:
    loader: object  # ffcv.loader.Loader
    decoder: object  # the image decoder; set decoder.output_size to change resolution
    normalized: bool  # True when the pipeline already normalised (GPU)

    def __iter__(self) -> "Epoch":
        # The crops' epoch is the epoch of the shuffle order ffcv is about to draw (ffcv's
        # Loader.__iter__ uses next_epoch, then increments it), written before ffcv's loading
        # thread starts.
        self._set_crop_epoch(self.loader.next_epoch)
        return Epoch(iter(self.loader))

    @property
    def epoch(self) -> int:
        """The epoch the next iteration runs: its shuffle order and, with the seeded
        decoder, its crops and flips are functions of (seed, epoch)."""
        return self.loader.next_epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch `epoch` (call before creating its iterator; a resumed
        run calls it with the epoch it resumes at)."""
        self.loader.next_epoch = int(epoch)
        self._set_crop_epoch(epoch)

    def _set_crop_epoch(self, epoch: int) -> None:
        if hasattr(self.decoder, "set_epoch"):  # the seeded decoder; ffcv's own have no epoch
            self.decoder.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def set_resolution(self, res: int) -> None:
        self.decoder.output_size = (res, res)


def make_loader(
    beton: str | Path,
    *,
    batch_size: int,
    res: int,
    train: bool,
    device: torch.device,
    workers: int,
    augment: bool = True,
    crop: str = "seeded",
    distributed: bool = False,
    seed: int = 0,
    drop_last: bool | None = None,
    os_cache: bool = True,
    crop_ratio: float = DEFAULT_CROP_RATIO,
    batches_ahead: int = 3,
    decode: str = "cpu",
    dtype: torch.dtype = torch.float16,
) -> BetonLoader:
    """A Loader over `beton` yielding (images, labels) on `device`.

    train=True: shuffled, RandomResizedCrop + horizontal flip by the `crop` decoder (CROPS;
    "seeded": a function of (seed, epoch, sample)), or with augment=False a centre crop and no
    flip; train=False: sequential, centre crop. `seed` sets the shuffle order and the seeded
    crops; the epoch is the loader's (`BetonLoader.set_epoch`).
    Checks the beton against its manifest first (`check_beton`): a damaged or mismatched file
    is a one-line UserError, not one of ffcv's opaque errors.
    """
    if crop not in CROPS:
        raise UserError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
    beton = Path(beton)
    check_beton(beton)
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import NormalizeImage, RandomHorizontalFlip, Squeeze, ToDevice, ToTensor, ToTorchImage

    from .seeded_decoder import SeededRandomResizedCropDecoder

    workers = resolve_workers(workers)
    decode = resolve_decode(decode, device)
    if train:
        # QUASI_RANDOM reads page-wise and suits data larger than RAM, but ffcv supports it
        # only without os_cache and without distributed loading.
        order = OrderOption.RANDOM if (os_cache or distributed) else OrderOption.QUASI_RANDOM
    else:
        order = OrderOption.SEQUENTIAL

    def ffcv_loader(image_ops: list, label_ops: list) -> Loader:
        return Loader(
            str(beton),
            batch_size=batch_size,
            num_workers=workers,
            order=order,
            os_cache=os_cache,
            drop_last=train if drop_last is None else drop_last,
            pipelines={"image": image_ops, "label": label_ops},
            distributed=distributed,
            seed=seed,
            batches_ahead=batches_ahead,
        )

    if decode == "gpu":
        return _device_decode_loader(beton, ffcv_loader, res=res, random_crop=train and augment, crop=crop,
                                     seed=seed, crop_ratio=crop_ratio, device=device, dtype=dtype)
    if train and augment and crop == "seeded":
        decoder = SeededRandomResizedCropDecoder((res, res), seed=seed)
        image_ops = [decoder]  # it flips too
    elif train and augment:
        decoder = RandomResizedCropRGBImageDecoder((res, res))
        image_ops = [decoder, RandomHorizontalFlip()]
    else:
        decoder = CenterCropRGBImageDecoder((res, res), ratio=crop_ratio)
        image_ops = [decoder]
    on_gpu = normalizes_on(device)
    image_ops += [ToTensor(), ToDevice(device, non_blocking=True), ToTorchImage()]
    if on_gpu:
        image_ops.append(NormalizeImage(IMAGENET_MEAN, IMAGENET_STD, np.float16))
    # Squeeze(1), not Squeeze(): a last batch of one label would become a 0-d tensor, and ffcv's
    # ToDevice then fails on its shape[0] in the loading thread.
    label_ops = [IntDecoder(), ToTensor(), Squeeze(1), ToDevice(device, non_blocking=True)]
    return BetonLoader(ffcv_loader(image_ops, label_ops), decoder, normalized=on_gpu)


def _device_decode_loader(beton: Path, ffcv_loader, *, res: int, random_crop: bool, crop: str, seed: int,
                          crop_ratio: float, device: torch.device, dtype: torch.dtype) -> BetonLoader:
    """The GPU data path's loader: ffcv copies bytes (labels stay on the CPU), the device decodes."""
    from ffcv.fields.basics import IntDecoder
    from ffcv.transforms import Squeeze, ToTensor

    from .device_loader import DeviceDecodeLoader
    from .jpeg_bytes import CompressedImageBytes, largest_payload

    if random_crop and crop != "seeded":
        raise UserError(f"data.crop: {crop} has no GPU path (it draws inside ffcv's decoder); the GPU path crops "
                        "with the seeded function: use data.crop: seeded, or data.decode: cpu")
    from .device_decode import indexed

    device = indexed(device)
    op = CompressedImageBytes(largest_payload(beton), random_crop=random_crop, seed=seed, ratio=crop_ratio)
    loader = ffcv_loader([op], [IntDecoder(), ToTensor(), Squeeze(1)])
    return DeviceDecodeLoader(loader, op, normalized=True, device=device, size=(res, res), dtype=dtype)


def auto_decode(cuda: bool) -> str:
    """What data.decode "auto" means on a machine with or without CUDA."""
    return "gpu" if cuda else "cpu"


def resolve_decode(decode: str, device: torch.device) -> str:
    """Where a run decodes its JPEGs, "cpu" or "gpu", from `data.decode` and the run's device:
    "auto" is "gpu" on CUDA, "cpu" otherwise; "gpu" without CUDA is a UserError (except under
    the tests' DECODE_ON_CPU_FOR_TESTS switch, which runs the GPU path's code on the CPU)."""
    if decode not in DECODES:
        raise UserError(f"data.decode must be one of {', '.join(DECODES)}, got {decode!r}")
    if decode == "auto":
        return auto_decode(device.type == "cuda")
    if decode == "gpu" and device.type != "cuda" and not os.environ.get(DECODE_ON_CPU_FOR_TESTS):
        raise UserError(f"data.decode: gpu needs a CUDA device, and this run's device is {device.type} "
                        "(use data.decode: cpu, or auto)")
    return decode


def stop_epoch(iterator) -> None:
    """End an epoch's iterator (`Epoch`, or the GPU path's `DecodingIterator`), early or not."""
    iterator.stop()


class Epoch:
    """One epoch of an ffcv Loader: its batches, and `stop()` to end it early or not.

    A dead loading thread is an error here, not a hang: ffcv's thread dies without a word when
    its pipeline raises (its traceback is printed), and ffcv's own iterator then waits on its
    queue for ever. `cancel`, when set, ends the iteration while it waits (the GPU path's decode
    thread is stopped that way)."""

    def __init__(self, ffcv_iterator, cancel: threading.Event | None = None):
        self.ffcv = ffcv_iterator  # ffcv's EpochIterator, a thread started at its creation
        self.cancel = cancel
        self._ended = False

    def __iter__(self):
        return self

    def __next__(self):
        if self._ended:
            raise StopIteration
        queue = self.ffcv.output_queue
        with queue.not_empty:  # the queue's own lock and condition: woken by every put
            while not queue.queue:
                if self.cancel is not None and self.cancel.is_set():
                    raise StopIteration
                if not self.ffcv.is_alive():
                    self._ended = True
                    raise UserError("ffcv's loading thread stopped before the end of the epoch "
                                    "(its traceback is above)")
                queue.not_empty.wait(timeout=0.5)
        try:  # a batch or ffcv's end marker is queued, and only this iterator takes from the queue
            return next(self.ffcv)
        except StopIteration:
            self._ended = True
            raise

    def __enter__(self) -> "Epoch":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Let ffcv's loading thread see its stop flag and exit before its memory is released
        (ffcv's own close() releases first, which can race with a batch in flight).

        ffcv's thread, once it has produced the epoch's last batch, blocks on putting its end
        marker into a full queue with no timeout, deaf to the stop flag; emptying the queue lets
        it finish. (Left alone, it held every early stop whose remaining batches fit in the
        queue for the full minute, and then stayed blocked.) A dead thread needs no waiting."""
        self._ended = True
        iterator = self.ffcv
        iterator.terminate_event.set()
        queue = iterator.output_queue
        deadline = time.monotonic() + 60
        while iterator.is_alive() and time.monotonic() < deadline:
            while not queue.empty():
                try:
                    queue.get_nowait()
                except Empty:
                    break
            iterator.join(timeout=0.05)
        iterator.close()


def normalizes_on(device: torch.device, decode: str = "cpu") -> bool:
    """Whether the loader hands out normalised batches, given the resolved `decode`: the GPU
    path always; the CPU path on a GPU, after ToDevice (ffcv-imagenet's way), but not on the
    CPU, where the JIT NormalizeImage would follow non-JIT ops and hang ffcv (#396)."""
    return decode == "gpu" or device.type == "cuda"


def training_crop(augment: bool, crop: str) -> str:
    """The training crop as summary.json and bench rows name it: the decoder, or "center"
    without augmentation."""
    return crop if augment else "center"


_stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def imagenet_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet's mean and std in levels of 255, float32 (1, 3, 1, 1) on `device` (made once)."""
    if device not in _stats:
        _stats[device] = (
            torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1),
            torch.tensor(IMAGENET_STD, dtype=torch.float32, device=device).view(1, 3, 1, 1),
        )
    return _stats[device]


def model_input(images: torch.Tensor, normalized: bool, precision: str = "fp32") -> torch.Tensor:
    """A loader batch as the model takes it, in training, evaluation and the model bench alike.

    CPU pipeline: uint8 NCHW, normalised here in fp32. GPU pipeline, or the GPU data path:
    already normalised (fp16, or the GPU path's dtype), which autocast takes as it is and an
    fp32 model needs cast to fp32.
    """
    if normalized:
        return images.float() if precision == "fp32" and images.dtype != torch.float32 else images
    mean, std = imagenet_stats(images.device)
    return ((images.float() - mean) / std).contiguous(memory_format=torch.channels_last)
