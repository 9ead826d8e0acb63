"""The loaders the loader bench times, each made as a user would make it: the toolkit's ffcv
pipeline (`ffcv_loader`), NVIDIA DALI's CPU pipeline (`DaliEpochs`) and torchvision's
ImageFolder + DataLoader (`pytorch_loader`). `Pipeline` names one."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, NamedTuple

from ffcv_inat.bench.data.image_folder import SourceImages

PIPELINES = ("ffcv", "dali", "pytorch")


class Pipeline(NamedTuple):
    """What one loader is: "ffcv" with its training crop decoder (ffcv_inat.loader: "seeded"
    or "ffcv") and decode path ("cpu" or "gpu"), or "dali" or "pytorch" (crop and decode None)."""

    name: str
    crop: str | None = None
    decode: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in self if p is not None)


def pytorch_loader(source: SourceImages, res: int, batch: int, workers: int):
    """The standard torchvision pipeline over the same files."""
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(res),
            transforms.RandomHorizontalFlip(),
            transforms.PILToTensor(),
        ]
    )
    ds = datasets.ImageFolder(str(source.root), transform=tf)
    ds.samples = ds.imgs = list(source.samples)
    ds.targets = [y for _, y in source.samples]
    # spawn: workers start as fresh interpreters and children of this process (so its CPU seconds
    # and memory count them), never forked from a process that may run numba's threads, which is
    # unsafe (and numba warns); a fork server here would be the bench's own (`isolated`), whose
    # children are not this pipeline's. With persistent workers how they start is in the
    # uncounted warm-up.
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=True,
        multiprocessing_context="spawn" if workers > 0 else None,
    )


DALI_MISSING = (
    "--pipeline dali needs NVIDIA DALI: pip install 'ffcv-inat[dali]' (nvidia-dali-cuda120, "
    "~0.8 GB; its CPU pipeline runs without a GPU)"
)


def dali_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("nvidia.dali") is not None


class DaliEpochs:
    """NVIDIA DALI's CPU pipeline over the same files as an epoch-by-epoch loader: each
    iteration gives len(samples) // batch batches (drop_last) of (uint8 N x 3 x res x res,
    labels). DALI's reader shuffles through its own buffer; its output buffers are reused at
    the next batch, as ffcv's are; nothing is decoded between batches asked for."""

    def __init__(self, source: SourceImages, res: int, batch: int, workers: int, seed: int = 0):
        from nvidia.dali import fn, pipeline, types

        self.batches = len(source.samples) // batch
        # Synchronous: run() makes exactly the batch it returns. DALI's default prefetching would
        # go on decoding after a round's clock stops (into the next pipeline's round) and hand
        # the next round batches made outside its clock. Its steady rate on the 4,000 photos was
        # the same within 3% either way (2-core dev VM, 2026-12-03).
        pipe = pipeline.Pipeline(
            batch_size=batch,
            num_threads=workers,
            device_id=None,
            seed=seed,
            exec_async=False,
            exec_pipelined=False,
            prefetch_queue_depth=1,
        )
        with pipe:
            jpegs, labels = fn.readers.file(
                files=[p for p, _ in source.samples],
                labels=[y for _, y in source.samples],
                random_shuffle=True,
                name="reader",
            )
            # torchvision's RandomResizedCrop parameters, fused into the decode (DALI's fast path)
            images = fn.decoders.image_random_crop(
                jpegs,
                device="cpu",
                output_type=types.RGB,
                random_area=[0.08, 1.0],
                random_aspect_ratio=[3 / 4, 4 / 3],
                num_attempts=10,
            )
            images = fn.resize(images, resize_x=res, resize_y=res)
            images = fn.crop_mirror_normalize(
                images, dtype=types.UINT8, output_layout="CHW", mirror=fn.random.coin_flip(probability=0.5)
            )
            pipe.set_outputs(images, labels)
        pipe.build()
        self.pipe = pipe

    def __iter__(self):
        import numpy as np
        import torch

        for _ in range(self.batches):
            images, labels = self.pipe.run()
            yield (
                torch.from_numpy(np.asarray(images.as_tensor())),
                torch.from_numpy(np.asarray(labels.as_tensor())).reshape(-1),
            )


def ffcv_loader(
    beton: Path,
    res: int,
    batch: int,
    workers: int,
    device=None,
    augment: bool = True,
    os_cache: bool = True,
    crop: str = "seeded",
    decode: str = "cpu",
    dtype=None,
    manifest=None,
):
    """The trainer's loader. On CPU (the default) the CPU decode path's batches stay uint8 like
    the PyTorch pipeline's (the loader's torch normalisation, `BetonLoader.finish`, is left out:
    the PyTorch pipeline has none); on a GPU, and from the GPU decode path, they arrive
    normalised on the device (in `dtype`, the GPU path's; default float16), as the trainer
    receives them. `manifest`: the beton's, checked by the caller (make_loader checks when None)."""
    import torch

    from ffcv_inat.loader import keep_alive, make_loader

    loader = make_loader(
        beton,
        batch_size=batch,
        res=res,
        train=True,
        device=device or torch.device("cpu"),
        workers=workers,
        augment=augment,
        os_cache=os_cache,
        crop=crop,
        decode=decode,
        dtype=dtype or torch.float16,
        manifest=manifest,
    )
    if decode == "cpu" and loader.finish is not None:
        loader.finish = None
    return keep_alive(loader)


def epoch_iterator(pipeline: Pipeline, loader) -> tuple[Iterator, Callable[[Iterator], None]]:
    if pipeline.name == "ffcv":
        return loader.start_epoch(), lambda epoch: epoch.stop()  # its seeded crops follow the epoch
    return iter(loader), lambda it: None
