"""Loader throughput: the toolkit's FFCV training pipeline against the standard PyTorch one.

Both read the same source images and produce the same thing, a uint8 NCHW batch of
RandomResizedCrop + horizontal flip at `res`, with the same batch size and worker count:

  ffcv     the beton through `ffcv_inat.loader.make_loader` (what `ffcv-train` trains on),
           with each training crop decoder asked for (`crops`: "seeded", ours, reproducible;
           "ffcv", ffcv's stock decoder + RandomHorizontalFlip) and each decode path (`decodes`:
           "cpu", JPEGs decoded in ffcv's workers; "gpu", the GPU data path, workers copy bytes
           and the device decodes). Its batches land on `device`: uint8 on the host like the
           PyTorch pipeline's, or on a GPU normalised as the trainer takes them (the GPU path's
           always are)
  pytorch  torchvision ImageFolder + RandomResizedCrop + RandomHorizontalFlip + PILToTensor in
           a DataLoader (shuffled, persistent workers, drop_last), what a user writes instead

Each pipeline runs warm-up epochs (numba compilation, worker start, page cache) that are
not counted, then measured epochs, interleaved between the pipelines; a figure is the median
over measured epochs. Each measured epoch also gives the CPU cores the pipeline kept busy
(CPU seconds of this process and its worker processes / wall seconds), the figure a GPU decode
path is meant to lower. The clock stops only once the device has finished the epoch's work.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

from ffcv_inat import UserError

from .stats import Spread, cores_used, settled, spread, throughput

PIPELINES = ("ffcv", "pytorch")

# Cores busy are measured only over epochs at least this long: /proc counts CPU time in clock
# ticks (10 ms), so a shorter epoch's figure is mostly rounding.
MIN_SECONDS_FOR_CORES = 0.5

# A measured round of a loader lasts at least this long by default (whole epochs, going over a
# small beton again): on 1,000 photos an epoch is under a second, and single epochs measured 2.5x
# apart on this 2-core machine. Warm-up goes on until two rounds agree within SETTLE_TOLERANCE,
# for at most MAX_EXTRA_WARMUP more rounds than asked.
MIN_ROUND_SECONDS = 4.0
SETTLE_TOLERANCE = 0.10
MAX_EXTRA_WARMUP = 3

# ffcv Loaders made here live as long as the process: freeing one earlier makes numba's
# finalizer of its compiled pipeline raise a (harmless, but loud) KeyError.
_LIVE_FFCV_LOADERS: list = []


class Pipeline(NamedTuple):
    """What one loader is: "ffcv" with its training crop decoder (ffcv_inat.loader: "seeded"
    or "ffcv") and decode path ("cpu" or "gpu"), or "pytorch" (crop and decode None)."""
    name: str
    crop: str | None = None
    decode: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in self if p is not None)


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
    from ffcv_inat.writers.beton import BetonContents, WriteOptions, write_beton

    dataset, infos = _class_infos(source.classes)
    return write_beton(out, source.samples, infos, BetonContents(dataset, source.root.name),
                       WriteOptions(workers=workers), root=source.root)


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
                os_cache: bool = True, crop: str = "seeded", decode: str = "cpu", dtype=None, manifest=None):
    """The trainer's loader. On CPU (the default) the CPU decode path's batches stay uint8 like
    the PyTorch pipeline's (the loader's torch normalisation, `BetonLoader.finish`, is left out:
    the PyTorch pipeline has none); on a GPU, and from the GPU decode path, they arrive
    normalised on the device (in `dtype`, the GPU path's; default float16), as the trainer
    receives them. `manifest`: the beton's, checked by the caller (make_loader checks when None)."""
    import torch

    from ffcv_inat.loader import make_loader

    loader = make_loader(beton, batch_size=batch, res=res, train=True, device=device or torch.device("cpu"),
                         workers=workers, augment=augment, os_cache=os_cache, crop=crop, decode=decode,
                         dtype=dtype or torch.float16, manifest=manifest)
    if decode == "cpu" and loader.finish is not None:
        loader.finish = None
    _LIVE_FFCV_LOADERS.append(loader)
    return loader


def epoch_iterator(pipeline: Pipeline, loader) -> tuple[Iterator, Callable[[Iterator], None]]:
    if pipeline.name == "ffcv":
        return loader.start_epoch(), lambda epoch: epoch.stop()  # its seeded crops follow the epoch
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
    decode: str | None = None  # the ffcv pipeline's decode path: cpu or gpu
    device: str = "cpu"  # where its batches land
    cores: Spread | None = None  # CPU cores kept busy over measured epochs (None: /proc unreadable)
    decode_counts: dict | None = None  # GPU path: how its samples were decoded, every epoch run (warm-up too)
    nvjpeg_backend: str | None = None  # GPU path on a GPU: nvJPEG's backend (device_decode.nvjpeg_backend)
    gpu_memory_mb: float | None = None  # the most GPU memory one of its epochs added (None: no CUDA)
    round_epochs: Spread | None = None  # epochs per measured round


def parse_proc_stat(text: str) -> tuple[int, int, int]:
    """(pid, parent pid, user + system clock ticks) from the text of /proc/<pid>/stat. The
    command name (field 2) may hold spaces and parentheses, so fields are counted after its
    last ')'."""
    pid = int(text[:text.index(" ")])
    rest = text[text.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): field 4 is the parent pid, fields 14 and 15 utime and stime
    return pid, int(rest[1]), int(rest[11]) + int(rest[12])


def cpu_seconds() -> float | None:
    """CPU seconds (user + system) used so far by this process, all its threads (ffcv's workers,
    the GPU path's decoding thread) included, and by its living descendants (the DataLoader's
    worker processes, started by the forkserver this process started). From /proc; None where
    it is missing. A descendant that has exited no longer counts: the persistent workers live
    through every measured epoch."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    parent_of, ticks = {}, {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                pid, ppid, t = parse_proc_stat(f.read())
        except (OSError, ValueError, IndexError):  # gone meanwhile, or unreadable
            continue
        parent_of[pid], ticks[pid] = ppid, t
    me = os.getpid()
    if me not in ticks:
        return None
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_of.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [me]
    while todo:
        pid = todo.pop()
        total += ticks[pid]
        todo += children.get(pid, [])
    return total / os.sysconf("SC_CLK_TCK")


def _gpu_memory_start() -> int | None:
    """Bytes the caching allocator holds in tensors now, the peak counter reset to it; None
    without CUDA in use."""
    import torch

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def _gpu_memory_added(start: int | None) -> float | None:
    """MiB of GPU memory in torch tensors at the epoch's peak above what was held before it: the
    loader's batches, queues and (GPU path) decode and resize buffers. Not counted: nvJPEG's own
    buffers (it allocates outside torch) and memory the caching allocator keeps reserved."""
    import torch

    if start is None:
        return None
    return (torch.cuda.max_memory_allocated() - start) / 2**20


def _synchronize_cuda() -> None:
    """Wait for all queued GPU work (every stream: ffcv's transfers, the GPU path's side stream)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class EpochTiming(NamedTuple):
    images: int
    seconds: float
    shape: tuple  # of the first batch
    device: str  # where the first batch landed: cpu or cuda
    cpu_seconds: float | None  # this process and its workers over the epoch; None: not measurable
    gpu_memory_mb: float | None = None  # GPU memory the epoch added at its peak (None: no CUDA)
    epochs: int = 1  # epochs summed in it (time_round)


def time_epoch(pipeline: Pipeline, loader, res: int, max_batches: int | None = None) -> EpochTiming:
    """One epoch, or its first max_batches batches: images, seconds, the first batch's shape and
    the CPU seconds spent. The clock stops after the GPU has done the epoch's work (the GPU path
    decodes on a side stream, the CPU path's copies are non-blocking) and before an epoch cut
    short is stopped: stopping ffcv's loading thread takes up to its 0.5 s polling interval, which
    is no loading work. The clock, the CPU count and the GPU memory baseline start before the
    epoch's iterator exists: its threads start loading (and the GPU path decoding) at once."""
    images, batches, shape, device = 0, 0, (), ""
    _synchronize_cuda()
    memory_start = _gpu_memory_start()
    cpu_start = cpu_seconds()
    start = time.perf_counter()
    it, stop = epoch_iterator(pipeline, loader)
    for x, _ in it:
        images += int(x.shape[0])
        batches += 1
        if not shape:
            shape, device = tuple(x.shape), x.device.type
            _check_batch(pipeline, x, res)
        if max_batches is not None and batches >= max_batches:
            break
    _synchronize_cuda()
    seconds = time.perf_counter() - start
    cpu_end = cpu_seconds()
    if max_batches is not None and batches >= max_batches:
        stop(it)
    cpu = cpu_end - cpu_start if cpu_start is not None and cpu_end is not None else None
    return EpochTiming(images, seconds, shape, device, cpu, _gpu_memory_added(memory_start))


def time_round(pipeline: Pipeline, loader, res: int, max_batches: int | None, min_seconds: float) -> EpochTiming:
    """Whole epochs (or their first max_batches batches) until `min_seconds` of them have gone
    by, summed: a small beton's epoch is too short a measurement on its own."""
    total = time_epoch(pipeline, loader, res, max_batches)
    epochs = 1
    while total.seconds < min_seconds and total.images > 0:
        t = time_epoch(pipeline, loader, res, max_batches)
        cpu = total.cpu_seconds + t.cpu_seconds if None not in (total.cpu_seconds, t.cpu_seconds) else None
        memory = max(total.gpu_memory_mb, t.gpu_memory_mb) if None not in (total.gpu_memory_mb, t.gpu_memory_mb) else None
        total = EpochTiming(total.images + t.images, total.seconds + t.seconds, total.shape, total.device, cpu, memory)
        epochs += 1
    return total._replace(epochs=epochs)


def warm_up(names: list, one: Callable[[Pipeline, str], float], warmup: int, max_extra: int = MAX_EXTRA_WARMUP,
            tolerance: float = SETTLE_TOLERANCE) -> dict:
    """`warmup` rounds of each pipeline, then more (at most `max_extra`) until its last two
    rounds agree within `tolerance` (stats.settled); {pipeline: warm-up rounds run}."""
    done = {}
    for name in names:
        rates = [one(name, f"warm-up {k + 1}") for k in range(warmup)]
        while warmup and not settled(rates, tolerance) and len(rates) < warmup + max_extra:
            rates.append(one(name, f"warm-up {len(rates) + 1}, settling"))
        done[name] = len(rates)
    return done


def time_pipelines(loaders: dict[Pipeline, object], res: int, batch: int, workers: int, warmup: int, epochs: int,
                   max_batches: int | None = None, echo: Callable[[str], None] = print,
                   min_seconds: float = 0.0, max_extra_warmup: int = MAX_EXTRA_WARMUP,
                   after_round: Callable[[], None] | None = None) -> list[LoaderResult]:
    """Warm-up rounds of each pipeline until its rate settles, then their measured rounds
    interleaved; a round is whole epochs lasting at least `min_seconds`. `after_round` runs
    after each measured round of all pipelines (the ceiling's rounds, under the same load).

    Interleaving (and alternating which goes first) exposes every pipeline alike to drift in
    the machine's load, which on a shared machine is larger than the difference measured.
    """
    names = list(loaders)
    measured: dict[Pipeline, list[EpochTiming]] = {n: [] for n in names}
    memory: dict[Pipeline, float] = {}

    def one(name: Pipeline, label: str) -> EpochTiming:
        t = time_round(name, loaders[name], res, max_batches, min_seconds)
        if t.images == 0:
            raise UserError(f"{name} gave no full batch of {batch}: use a smaller --batch")
        if t.gpu_memory_mb is not None:
            memory[name] = max(memory.get(name, 0.0), t.gpu_memory_mb)
        busy = _busy(t)
        echo(f"  {str(name):15s} res {res:4d}  {label}: {t.epochs} epoch{'s' if t.epochs > 1 else ''}, "
             f"{t.images} images in {t.seconds:.2f} s = {throughput(t.images, t.seconds):,.0f} img/s"
             + (f", {busy:.1f} cores busy" if busy is not None else "")
             + (f", +{t.gpu_memory_mb:,.0f} MiB GPU memory at peak" if t.gpu_memory_mb is not None else ""))
        return t

    warmed = warm_up(names, lambda n, label: _rate(one(n, label)), warmup, max_extra_warmup)
    for e in range(epochs):
        for name in (names if e % 2 == 0 else names[::-1]):
            measured[name].append(one(name, f"measured {e + 1}/{epochs}"))
        if after_round is not None:
            after_round()
    return [_result(n, loaders[n], res, batch, workers, warmed[n], measured[n], memory.get(n)) for n in names]


def _rate(t: EpochTiming) -> float:
    return throughput(t.images, t.seconds)


def _busy(t: EpochTiming) -> float | None:
    """CPU cores busy over a round; None where not measurable or too short for /proc's ticks."""
    if t.cpu_seconds is None or t.seconds < MIN_SECONDS_FOR_CORES:
        return None
    return cores_used(t.cpu_seconds, t.seconds)


def _result(p: Pipeline, loader, res: int, batch: int, workers: int, warmup: int, rounds: list[EpochTiming],
            gpu_memory_mb: float | None = None) -> LoaderResult:
    """A pipeline's figures over its measured rounds, with the GPU path's decode counts and
    nvJPEG backend."""
    busy = [_busy(t) for t in rounds]
    cores = spread(busy) if None not in busy else None
    counts, backend = None, None
    device = rounds[0].device
    if hasattr(loader, "counts"):  # the GPU path's DeviceDecodeLoader
        from ffcv_inat.loader.gpu import nvjpeg_backend

        counts = loader.counts.as_dict()
        if loader.counts.failed_batches:  # why nvJPEG refused a batch: the only evidence of it
            counts["first_failure"] = loader.counts.failed_batches[0]
        if device == "cuda":  # asked after its decodes, when libnvjpeg is loaded
            backend = nvjpeg_backend()
    return LoaderResult(p.name, p.crop, res, batch, workers, warmup, spread([_rate(t) for t in rounds]),
                        rounds[-1].images // rounds[-1].epochs, rounds[0].shape, p.decode, device, cores, counts,
                        backend, gpu_memory_mb, spread([t.epochs for t in rounds]))


def time_pipeline(pipeline: Pipeline, loader, res: int, batch: int, workers: int, warmup: int, epochs: int,
                  max_batches: int | None = None, echo: Callable[[str], None] = print,
                  min_seconds: float = 0.0, max_extra_warmup: int = MAX_EXTRA_WARMUP) -> LoaderResult:
    """One pipeline alone: warm-up rounds, then `epochs` measured rounds; their images/s."""
    return time_pipelines({pipeline: loader}, res, batch, workers, warmup, epochs, max_batches, echo, min_seconds,
                          max_extra_warmup)[0]


def _check_batch(pipeline: Pipeline, x, res: int) -> None:
    """Every pipeline gives N x 3 x res x res: uint8 pixels, or normalised floats where the
    loader normalises (on a GPU, the GPU path)."""
    import torch

    normalized = pipeline.decode == "gpu" or x.device.type == "cuda"
    want = "floating point" if normalized else "uint8"
    ok_dtype = x.dtype.is_floating_point if normalized else x.dtype == torch.uint8
    if not ok_dtype or x.ndim != 4 or tuple(x.shape[1:]) != (3, res, res):
        raise RuntimeError(f"{pipeline} pipeline gave {x.dtype} {tuple(x.shape)}, not {want} Nx3x{res}x{res}")


def run_loader_bench(source: SourceImages | None, beton: Path, resolutions: Iterable[int], batch: int, workers: int,
                     warmup: int, epochs: int, pipelines: Iterable[str] = PIPELINES,
                     max_batches: int | None = None, echo: Callable[[str], None] = print,
                     crops: Iterable[str] = ("seeded",), decodes: Iterable[str] = ("cpu",),
                     device=None, min_seconds: float = MIN_ROUND_SECONDS,
                     ceiling_round: Callable[[int], tuple] | None = None, manifest=None) -> list[LoaderResult]:
    """Every pipeline asked for at each resolution, the ffcv one once per crop decoder in
    `crops` and decode path in `decodes` (resolved: "cpu" or "gpu"), its batches on `device`
    (default the host), their measured rounds interleaved, with `ceiling_round(res)` (the
    ceiling's, ceiling.CeilingRounds.round) after each. `manifest`: the beton's, checked once by the
    caller and handed to every loader (checked by each loader when None)."""
    pipelines = list(pipelines)
    if source is not None and len(source.samples) < batch:
        raise UserError(f"--batch {batch} is larger than the {len(source.samples)} images: no full batch")
    results = []
    for res in resolutions:
        loaders = {}
        if "ffcv" in pipelines:
            for crop in crops:
                for decode in decodes:
                    loaders[Pipeline("ffcv", crop, decode)] = ffcv_loader(beton, res, batch, workers, device=device,
                                                                          crop=crop, decode=decode, manifest=manifest)
        if "pytorch" in pipelines:
            loaders[Pipeline("pytorch")] = pytorch_loader(source, res, batch, workers)
        after = None
        if ceiling_round is not None:
            def after(res=res):
                decode, resized = ceiling_round(res)
                echo(f"  {'ceiling':15s} res {res:4d}  decode {decode:,.0f} img/s, decode + resize {resized:,.0f} img/s")
        results += time_pipelines(loaders, res, batch, workers, warmup, epochs, max_batches, echo, min_seconds,
                                  after_round=after)
        loaders.clear()  # the DataLoader's persistent workers stop before the next resolution
    return results
