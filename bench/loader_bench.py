"""Loader throughput: the toolkit's FFCV training pipeline against the standard PyTorch one.

Both read the same source images and produce the same thing, a uint8 NCHW batch of
RandomResizedCrop + horizontal flip at `res`, with the same batch size and worker count:

  ffcv     the beton through `ffcv_inat.loaders.make_loader` (what `ffcv-train` trains on),
           with each training crop decoder asked for (`crops`: "seeded", ours, reproducible;
           "ffcv", ffcv's stock decoder + RandomHorizontalFlip)
  pytorch  torchvision ImageFolder + RandomResizedCrop + RandomHorizontalFlip + PILToTensor in
           a DataLoader (shuffled, persistent workers, drop_last), what a user writes instead

Each pipeline runs warm-up epochs (numba compilation, worker start, page cache) that are
not counted, then measured epochs, interleaved between the pipelines; a figure is the median
over measured epochs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

from ffcv_inat import UserError

from .stats import Spread, spread, throughput

PIPELINES = ("ffcv", "pytorch")

# ffcv Loaders made here live as long as the process: freeing one earlier makes numba's
# finalizer of its compiled pipeline raise a (harmless, but loud) KeyError.
_LIVE_FFCV_LOADERS: list = []


class Pipeline(NamedTuple):
    """What one loader is: "ffcv" with its training crop decoder (ffcv_inat.loaders: "seeded"
    or "ffcv"), or "pytorch" (crop None)."""
    name: str
    crop: str | None = None

    def __str__(self) -> str:
        return self.name if self.crop is None else f"{self.name}/{self.crop}"


@dataclass(frozen=True)
class SourceImages:
    """The images both pipelines read: ImageFolder's own listing, minus files the beton skipped."""
    root: Path
    classes: list[str]
    samples: list[tuple[str, int]]


def list_image_folder(images_dir: str | Path) -> SourceImages:
    """DIR/<class>/<image> as ImageFolder sees it: class folders sorted, label = position."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    root = Path(images_dir)
    if not root.is_dir():
        raise UserError(f"--images: not a folder: {root}")
    try:
        classes, class_to_idx = find_classes(str(root))
        samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
    except (FileNotFoundError, RuntimeError) as e:  # torchvision's words for "no classes"/"no images"
        raise UserError(f"--images {root}: not an ImageFolder tree DIR/<class>/<image> ({e})") from None
    return SourceImages(root, classes, samples)


def _class_infos(classes: list[str]):
    """Real names when the folders are ImageNet wnids (e.g. <imagenet>/train), else the folder name."""
    from ffcv_inat.classes import class_by_wnid
    from ffcv_inat.writers.beton import ClassInfo

    table = class_by_wnid()
    if all(c in table for c in classes):
        return "imagenet", [ClassInfo(c, table[c].name, table[c].group) for c in classes]
    return "imagefolder", [ClassInfo(c, c, None) for c in classes]


def write_source_beton(source: SourceImages, out: Path, workers: int = 0):
    """Write `source` to `out` (+ manifest) with the writer's default options."""
    from ffcv_inat.writers.beton import WriteOptions, write_beton

    dataset, infos = _class_infos(source.classes)
    return write_beton(out, source.samples, infos, dataset=dataset, split=source.root.name, subset=None, k=None,
                       seed=None, opts=WriteOptions(workers=workers), root=source.root)


def matched_to_beton(source: SourceImages, manifest) -> SourceImages:
    """Drop the files the beton writer skipped, and refuse a beton of other images."""
    skipped = {s["path"] for s in manifest.skipped}

    def was_skipped(path: str) -> bool:
        # Skipped paths are relative to the writer's root, which may be DIR or a parent of it.
        return any(path == s or path.endswith("/" + s) for s in skipped)

    kept = [(p, y) for p, y in source.samples if not was_skipped(p)] if skipped else source.samples
    if len(kept) != manifest.num_images:
        raise UserError(f"the beton holds {manifest.num_images} images but {source.root} has {len(kept)} readable "
                        "ones: both pipelines must read the same images (drop --beton to write it from DIR)")
    return SourceImages(source.root, source.classes, kept)


def pytorch_loader(source: SourceImages, res: int, batch: int, workers: int):
    """The standard torchvision pipeline over the same files."""
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose([
        transforms.RandomResizedCrop(res),
        transforms.RandomHorizontalFlip(),
        transforms.PILToTensor(),
    ])
    ds = datasets.ImageFolder(str(source.root), transform=tf)
    ds.samples = ds.imgs = list(source.samples)
    ds.targets = [y for _, y in source.samples]
    # forkserver (Python 3.14's default on Linux): workers start from a clean process, never forked
    # from this one once ffcv has started numba's threads, which is unsafe (and numba warns). It only
    # changes how workers start; with persistent workers that is inside the uncounted warm-up.
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                       persistent_workers=workers > 0, drop_last=True,
                                       multiprocessing_context="forkserver" if workers > 0 else None)


def ffcv_loader(beton: Path, res: int, batch: int, workers: int, device=None, augment: bool = True,
                os_cache: bool = True, crop: str = "seeded"):
    """The trainer's loader. On CPU (the default) batches stay uint8 like the PyTorch pipeline's;
    on a GPU they arrive normalised on the device, as the trainer receives them."""
    import torch

    from ffcv_inat.loaders import make_loader

    loader = make_loader(beton, batch_size=batch, res=res, train=True, device=device or torch.device("cpu"),
                         workers=workers, augment=augment, os_cache=os_cache, crop=crop)
    _LIVE_FFCV_LOADERS.append(loader)
    return loader


def epoch_iterator(pipeline: Pipeline, loader) -> tuple[Iterator, Callable[[Iterator], None]]:
    if pipeline.name == "ffcv":
        from ffcv_inat.loaders import stop_epoch

        return iter(loader), stop_epoch  # the BetonLoader: its seeded crops follow the epoch
    return iter(loader), lambda it: None


@dataclass(frozen=True)
class LoaderResult:
    pipeline: str
    crop: str | None  # the ffcv pipeline's training crop decoder
    res: int
    batch: int
    workers: int
    warmup: int
    measured: Spread  # images/s over measured epochs
    images_per_epoch: int
    shape: tuple[int, ...]  # of the first batch, to show both pipelines give the same thing


def time_epoch(pipeline: Pipeline, loader, res: int, max_batches: int | None = None) -> tuple[int, float, tuple]:
    """(images, seconds, shape of the first batch) of one epoch, or of its first max_batches batches."""
    it, stop = epoch_iterator(pipeline, loader)
    images, batches, shape, x = 0, 0, (), None
    start = time.perf_counter()
    for x, _ in it:
        images += int(x.shape[0])
        batches += 1
        if not shape:
            shape = tuple(x.shape)
            _check_batch(pipeline, x, res)
        if max_batches is not None and batches >= max_batches:
            stop(it)
            break
    if x is not None and x.is_cuda:  # the last non-blocking copies must land before the clock stops
        import torch

        torch.cuda.synchronize(x.device)
    return images, time.perf_counter() - start, shape


def time_pipelines(loaders: dict[Pipeline, object], res: int, batch: int, workers: int, warmup: int, epochs: int,
                   max_batches: int | None = None, echo: Callable[[str], None] = print) -> list[LoaderResult]:
    """Warm-up epochs of each pipeline, then their measured epochs interleaved.

    Interleaving (and alternating which goes first) exposes every pipeline alike to drift in
    the machine's load, which on a shared machine is larger than the difference measured.
    """
    names = list(loaders)
    rates: dict[Pipeline, list[float]] = {n: [] for n in names}
    shapes: dict[Pipeline, tuple] = {}
    images: dict[Pipeline, int] = {}
    total = warmup + epochs

    def one(name: Pipeline, e: int) -> float:
        n, seconds, shape = time_epoch(name, loaders[name], res, max_batches)
        if n == 0:
            raise UserError(f"{name} gave no full batch of {batch}: use a smaller --batch")
        shapes.setdefault(name, shape)
        images[name] = n
        rate = throughput(n, seconds)
        kind = "warm-up" if e < warmup else "measured"
        echo(f"  {str(name):11s} res {res:4d}  epoch {e + 1}/{total} ({kind}): {n} images in {seconds:.2f} s = {rate:,.0f} img/s")
        return rate

    for e in range(warmup):
        for name in names:
            one(name, e)
    for e in range(epochs):
        for name in (names if e % 2 == 0 else names[::-1]):
            rates[name].append(one(name, warmup + e))
    return [LoaderResult(n.name, n.crop, res, batch, workers, warmup, spread(rates[n]), images[n], shapes[n])
            for n in names]


def time_pipeline(pipeline: Pipeline, loader, res: int, batch: int, workers: int, warmup: int, epochs: int,
                  max_batches: int | None = None, echo: Callable[[str], None] = print) -> LoaderResult:
    """One pipeline alone: warmup + epochs epochs; images/s of the measured ones."""
    return time_pipelines({pipeline: loader}, res, batch, workers, warmup, epochs, max_batches, echo)[0]


def _check_batch(pipeline: Pipeline, x, res: int) -> None:
    import torch

    on_cpu = x.device.type == "cpu"
    if (on_cpu and x.dtype != torch.uint8) or x.ndim != 4 or tuple(x.shape[1:]) != (3, res, res):
        raise RuntimeError(f"{pipeline} pipeline gave {x.dtype} {tuple(x.shape)}, not uint8 Nx3x{res}x{res}")


def run_loader_bench(source: SourceImages, beton: Path, resolutions: Iterable[int], batch: int, workers: int,
                     warmup: int, epochs: int, pipelines: Iterable[str] = PIPELINES,
                     max_batches: int | None = None, echo: Callable[[str], None] = print,
                     crops: Iterable[str] = ("seeded",)) -> list[LoaderResult]:
    """Every pipeline asked for at each resolution, the ffcv one once per crop decoder in
    `crops`, their measured epochs interleaved."""
    pipelines = list(pipelines)
    if len(source.samples) < batch:
        raise UserError(f"--batch {batch} is larger than the {len(source.samples)} images: no full batch")
    results = []
    for res in resolutions:
        loaders = {}
        if "ffcv" in pipelines:
            for crop in crops:
                loaders[Pipeline("ffcv", crop)] = ffcv_loader(beton, res, batch, workers, crop=crop)
        if "pytorch" in pipelines:
            loaders[Pipeline("pytorch")] = pytorch_loader(source, res, batch, workers)
        results += time_pipelines(loaders, res, batch, workers, warmup, epochs, max_batches, echo)
        loaders.clear()  # the DataLoader's persistent workers stop before the next resolution
    return results
