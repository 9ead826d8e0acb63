"""`make_loader`, the one factory of the data path, and the run decisions it takes as made.

Training crops (`crop`, config `data.crop`): "seeded", the default, is our
`SeededRandomResizedCropDecoder` (`seeded_decoder`), whose RandomResizedCrop and flip are a pure
function of (seed, epoch, sample index, image size) (`crops`), so a run is reproducible;
"ffcv" is ffcv's RandomResizedCropRGBImageDecoder + RandomHorizontalFlip, which draw from
numba's unseeded generator (kept to compare: `ffcv-bench loader --crop`). The epoch of the
crops is always the epoch of the shuffle order (`BetonLoader.set_epoch`).

Where JPEGs are decoded (`decode`, config `data.decode`), resolved once per run by
`choices.resolve_decode`: "cpu" decodes in ffcv's workers (`presets`); "gpu" is the GPU data path
(`gpu`): workers only copy each sample's stored bytes with its crop box and flip, boxes from the
same `crops` functions, and the device decodes, crops, flips and normalises.

Every loader hands out the model's input: normalised, channels-last NCHW (`normalize`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ffcv.loader import Loader, OrderOption

from .. import UserError
from ..beton import Manifest, beton_file, check_beton, label_lookup, sample_indices
from ..environment import resolve_workers
from . import presets
from .beton_loader import BetonLoader, keep_buffers_across_epochs
from .constants import CROPS, DEFAULT_CROP_RATIO
from .os_cache import lean_os_cache
from .gpu import CompressedImageBytes, DeviceDecodeLoader, indexed, largest_payload

# What make_loader returns: either path's loader, the same interface (iterate, start_epoch,
# set_epoch, set_resolution, len).
AnyLoader = BetonLoader | DeviceDecodeLoader


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
    manifest: Manifest | None = None,
) -> AnyLoader:
    """A loader over `beton` yielding (images, labels) on `device`, images as the model takes them.

    train=True: shuffled, RandomResizedCrop + horizontal flip by the `crop` decoder (CROPS;
    "seeded": a function of (seed, epoch, sample)), or with augment=False a centre crop and no
    flip; train=False: sequential, centre crop. `seed` sets the shuffle order and the seeded
    crops; the epoch is the loader's (`set_epoch`). `decode` is resolved, "cpu" or "gpu"
    (`resolve_decode` decides, once per run); "gpu" runs on any `device` (the tests run it on
    the CPU). `dtype`: the GPU path's images (the CPU path's are float16 on a GPU, float32 on the CPU).
    `manifest`: the beton's, already checked (`check_beton`, once per beton per process);
    without it the beton is checked here, so a damaged or mismatched file is a one-line
    UserError, not one of ffcv's opaque errors. A view (NAME.view.json) reads its parent's
    samples it names, its labels 0..k-1 in its own class order.
    """
    if crop not in CROPS:
        raise UserError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
    if decode not in ("cpu", "gpu"):
        raise ValueError(f"decode must be resolved to cpu or gpu (resolve_decode), got {decode!r}")
    if manifest is None:
        manifest = check_beton(beton)
    file, indices, lookup = beton_file(beton, manifest), sample_indices(manifest), label_lookup(manifest)
    label_map = None if lookup is None else torch.from_numpy(lookup)
    random_crop = train and augment
    if decode == "gpu" and random_crop and crop != "seeded":
        raise UserError(
            f"data.crop: {crop} has no GPU path (it draws inside ffcv's decoder); the GPU path crops "
            "with the seeded function: use data.crop: seeded, or data.decode: cpu"
        )
    args = dict(
        batch_size=batch_size,
        num_workers=resolve_workers(workers),
        order=_order(train, os_cache, distributed),
        os_cache=os_cache,
        drop_last=train if drop_last is None else drop_last,
        distributed=distributed,
        seed=seed,
        batches_ahead=batches_ahead,
    )

    def ffcv_loader(image_ops: list, label_ops: list) -> Loader:
        return _ffcv_loader(file, indices, {"image": image_ops, "label": label_ops}, args)

    if decode == "gpu":
        op = CompressedImageBytes(largest_payload(file), random_crop=random_crop, seed=seed, ratio=crop_ratio)
        source = BetonLoader(ffcv_loader([op], presets.labels(None)), op, label_map=label_map)
        return DeviceDecodeLoader(source, device=indexed(device), size=(res, res), dtype=dtype)
    images = _cpu_images(res, seed, device, random_crop, crop, crop_ratio)
    return BetonLoader(
        ffcv_loader(images.ops, presets.labels(device)), images.decoder, images.finish, label_map=label_map
    )


def _order(train: bool, os_cache: bool, distributed: bool) -> OrderOption:
    """Training shuffles; QUASI_RANDOM reads page-wise and suits data larger than RAM, but ffcv
    supports it only without os_cache and without distributed loading. Evaluation is sequential."""
    if not train:
        return OrderOption.SEQUENTIAL
    return OrderOption.RANDOM if (os_cache or distributed) else OrderOption.QUASI_RANDOM


def _ffcv_loader(file: Path, indices, pipelines: dict, args: dict) -> Loader:
    """ffcv's Loader over `file` (a view's parent: only its `indices`), its slots kept across
    epochs, its OS-cache manager without ffcv's whole-file Python tables (`os_cache`)."""
    with lean_os_cache():
        loader = Loader(
            str(file),
            indices=None if indices is None else indices.astype(np.uint64),  # ffcv's own dtype for them
            pipelines=pipelines,
            **args,
        )
    keep_buffers_across_epochs(loader)
    return loader


def _cpu_images(res: int, seed: int, device: torch.device, random_crop: bool, crop: str, crop_ratio: float):
    """The CPU path's image pipeline: the training crop decoder asked for, or the centre crop."""
    if random_crop and crop == "seeded":
        return presets.seeded_train(res, seed, device)
    if random_crop:
        return presets.ffcv_train(res, device)
    return presets.center(res, crop_ratio, device)
