"""Loader throughput: the toolkit's FFCV training pipeline against its peers.

Every pipeline reads the same images and produces the same thing, a uint8 NCHW batch of
RandomResizedCrop + horizontal flip at `res`, with the same batch size and worker count:

  ffcv     the beton through `ffcv_inat.loader.make_loader` (what `ffcv-train` trains on),
           with each training crop decoder asked for (`crops`: "seeded", ours, reproducible;
           "ffcv", ffcv's stock decoder + RandomHorizontalFlip) and each decode path (`decodes`:
           "cpu", JPEGs decoded in ffcv's workers; "gpu", the GPU data path, workers copy bytes
           and the device decodes). Its batches land on `device`: uint8 on the host like the
           others', or on a GPU normalised as the trainer takes them (the GPU path's always are)
  dali     NVIDIA DALI's CPU pipeline (`DaliEpochs`, the optional extra `ffcv-inat[dali]`):
           its file reader on the ImageFolder's files, fused decode + random crop, resize,
           flip, uint8 CHW, on `workers` threads
  pytorch  torchvision ImageFolder + RandomResizedCrop + RandomHorizontalFlip + PILToTensor in
           a DataLoader (shuffled, persistent workers, drop_last), what a user writes instead

Each pipeline lives in a process of its own (`isolated.Isolated`, the ceiling too): in one
process the pipelines disturbed each other's figures (bench/README.md says how). Each runs
warm-up rounds (numba compilation, worker start, page cache) that are not counted, then
measured rounds, interleaved in time between the pipelines, one pipeline working at a time; a
figure is the median over measured rounds. Each measured round also gives the CPU cores the
pipeline kept busy (CPU seconds of its process and its worker processes / wall seconds), the
figure a GPU decode path is meant to lower, and each pipeline the anonymous memory its loader
added to its process tree. The clock stops only once the device has finished the epoch's work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

from ffcv_inat import UserError
from ffcv_inat.bench.data.image_folder import SourceImages
from ffcv_inat.bench.results import ResultRow
from ffcv_inat.bench.stats import Spread, cores_used, ratio, settled, spread, throughput
from ffcv_inat.bench.throughput.pipelines import (
    DALI_MISSING,
    PIPELINES,
    DaliEpochs,
    Pipeline,
    dali_available,
    epoch_iterator,
    ffcv_loader,
    pytorch_loader,
)
from ffcv_inat.bench.throughput.usage import (
    anon_memory_mb,
    cpu_seconds,
    gpu_memory_added,
    gpu_memory_start,
    synchronize_cuda,
)

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
    memory_mb: float | None = None  # memory its loader added to its process tree at its epochs' ends, the most (MiB)


class EpochTiming(NamedTuple):
    images: int
    seconds: float
    shape: tuple  # of the first batch
    device: str  # where the first batch landed: cpu or cuda
    cpu_seconds: float | None  # this process and its workers over the epoch; None: not measurable
    gpu_memory_mb: float | None = None  # GPU memory the epoch added at its peak (None: no CUDA)
    epochs: int = 1  # epochs summed in it (time_round)
    anon_mb: float | None = None  # the process tree's anonymous memory at the epoch's end (None: no /proc)


def time_epoch(pipeline: Pipeline, loader, res: int, max_batches: int | None = None) -> EpochTiming:
    """One epoch, or its first max_batches batches: images, seconds, the first batch's shape and
    the CPU seconds spent. The clock stops after the GPU has done the epoch's work (the GPU path
    decodes on a side stream, the CPU path's copies are non-blocking) and before an epoch cut
    short is stopped: stopping ffcv's loading thread takes up to its 0.5 s polling interval, which
    is no loading work. The clock, the CPU count and the GPU memory baseline start before the
    epoch's iterator exists: its threads start loading (and the GPU path decoding) at once."""
    images, batches, shape, device = 0, 0, (), ""
    synchronize_cuda()
    memory_start = gpu_memory_start()
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
    synchronize_cuda()
    seconds = time.perf_counter() - start
    cpu_end = cpu_seconds()
    anon = anon_memory_mb()  # while the epoch's buffers and workers are alive
    if max_batches is not None and batches >= max_batches:
        stop(it)
    cpu = cpu_end - cpu_start if cpu_start is not None and cpu_end is not None else None
    return EpochTiming(images, seconds, shape, device, cpu, gpu_memory_added(memory_start), anon_mb=anon)


def time_round(pipeline: Pipeline, loader, res: int, max_batches: int | None, min_seconds: float) -> EpochTiming:
    """Whole epochs (or their first max_batches batches) until `min_seconds` of them have gone
    by, summed: a small beton's epoch is too short a measurement on its own."""
    total = time_epoch(pipeline, loader, res, max_batches)
    epochs = 1
    while total.seconds < min_seconds and total.images > 0:
        t = time_epoch(pipeline, loader, res, max_batches)
        cpu = total.cpu_seconds + t.cpu_seconds if None not in (total.cpu_seconds, t.cpu_seconds) else None
        memory = (
            max(total.gpu_memory_mb, t.gpu_memory_mb) if None not in (total.gpu_memory_mb, t.gpu_memory_mb) else None
        )
        anon = max(total.anon_mb, t.anon_mb) if None not in (total.anon_mb, t.anon_mb) else None
        total = EpochTiming(
            total.images + t.images, total.seconds + t.seconds, total.shape, total.device, cpu, memory, anon_mb=anon
        )
        epochs += 1
    return total._replace(epochs=epochs)


def warm_up(
    names: list,
    one: Callable[[Pipeline, str], float],
    warmup: int,
    max_extra: int = MAX_EXTRA_WARMUP,
    tolerance: float = SETTLE_TOLERANCE,
) -> dict:
    """`warmup` rounds of each pipeline, then more (at most `max_extra`) until its last two
    rounds agree within `tolerance` (stats.settled); {pipeline: warm-up rounds run}."""
    done = {}
    for name in names:
        rates = [one(name, f"warm-up {k + 1}") for k in range(warmup)]
        while warmup and not settled(rates, tolerance) and len(rates) < warmup + max_extra:
            rates.append(one(name, f"warm-up {len(rates) + 1}, settling"))
        done[name] = len(rates)
    return done


@dataclass(frozen=True)
class PipelineSpec:
    """What a pipeline's process needs to make its loader (crosses to it by pickle)."""

    pipeline: Pipeline
    beton: Path
    res: int
    batch: int
    workers: int
    device: str  # where the ffcv pipeline's batches land
    source: SourceImages | None  # the ImageFolder's files (dali, pytorch)
    manifest: object = None  # the beton's, checked once by the caller


class PipelineRun:
    """A pipeline's loader where it runs, with the anonymous memory of its process tree
    before the loader was made (None: not measured, or no /proc)."""

    def __init__(self, pipeline: Pipeline, loader, res: int, memory_before: float | None = None):
        self.pipeline, self.loader, self.res, self.memory_before = pipeline, loader, res, memory_before
        self.memory_peak: float | None = None
        self.batch_device: str | None = None  # where its batches landed: cpu or cuda

    def round(self, max_batches: int | None, min_seconds: float) -> EpochTiming:
        t = time_round(self.pipeline, self.loader, self.res, max_batches, min_seconds)
        self.batch_device = t.device
        if t.anon_mb is not None:
            self.memory_peak = max(self.memory_peak or 0.0, t.anon_mb)
        return t

    def details(self) -> tuple[dict | None, str | None, float | None]:
        """(the GPU path's decode counts, nvJPEG's backend, the memory its loader added)."""
        counts, backend = None, None
        if hasattr(self.loader, "counts"):  # the GPU path's DeviceDecodeLoader
            from ffcv_inat.loader import nvjpeg_backend

            counts = self.loader.counts.as_dict()
            if self.loader.counts.failed_batches:  # why nvJPEG refused a batch: the only evidence of it
                counts["first_failure"] = self.loader.counts.failed_batches[0]
            if self.batch_device == "cuda":  # asked after its decodes, when libnvjpeg is loaded
                backend = nvjpeg_backend()
        added = self.memory_peak - self.memory_before if None not in (self.memory_peak, self.memory_before) else None
        return counts, backend, added


def make_pipeline_loader(spec: PipelineSpec):
    """The loader of one pipeline (in the process it runs in)."""
    import torch

    p = spec.pipeline
    if p.name == "ffcv":
        return ffcv_loader(
            spec.beton,
            spec.res,
            spec.batch,
            spec.workers,
            device=torch.device(spec.device),
            crop=p.crop,
            decode=p.decode,
            manifest=spec.manifest,
        )
    if p.name == "dali":
        return DaliEpochs(spec.source, spec.res, spec.batch, spec.workers)
    return pytorch_loader(spec.source, spec.res, spec.batch, spec.workers)


def open_pipeline(spec: PipelineSpec) -> PipelineRun:
    """A pipeline's loader, made in its own process (`Isolated`'s factory). Its libraries are
    imported before the memory baseline, so the memory added is the loader's own."""
    import torch

    if spec.pipeline.name == "ffcv":
        from ffcv_inat.loader import make_loader  # noqa: F401 (ffcv and numba, imported on first use)
    elif spec.pipeline.name == "dali":
        import nvidia.dali.fn  # noqa: F401
    else:
        import torchvision.datasets  # noqa: F401
    if torch.cuda.is_available():  # ffcv's loader starts CUDA where it can: its context is no loader's memory
        torch.cuda.init()
    before = anon_memory_mb()
    return PipelineRun(spec.pipeline, make_pipeline_loader(spec), spec.res, before)


class OwnProcess:
    """A pipeline in a process of its own, driven a round at a time (`PipelineRun`'s interface)."""

    def __init__(self, spec: PipelineSpec):
        from ffcv_inat.bench.throughput.isolated import Isolated

        self.process = Isolated(open_pipeline, spec, name=str(spec.pipeline))

    def round(self, max_batches: int | None, min_seconds: float) -> EpochTiming:
        return self.process.call(PipelineRun.round, max_batches, min_seconds)

    def details(self):
        return self.process.call(PipelineRun.details)

    def close(self) -> None:
        self.process.close()


def time_pipelines(
    runs: dict,
    res: int,
    batch: int,
    workers: int,
    warmup: int,
    epochs: int,
    max_batches: int | None = None,
    echo: Callable[[str], None] = print,
    min_seconds: float = 0.0,
    max_extra_warmup: int = MAX_EXTRA_WARMUP,
    after_round: Callable[[], None] | None = None,
) -> list[LoaderResult]:
    """Warm-up rounds of each pipeline (`runs`: Pipeline -> PipelineRun or OwnProcess) until
    its rate settles, then their measured rounds interleaved; a round is whole epochs lasting at
    least `min_seconds`. `after_round` runs after each measured round of all pipelines (the
    ceiling's rounds, under the same load).

    Interleaving (and alternating which goes first) exposes every pipeline alike to drift in
    the machine's load, which on a shared machine is larger than the difference measured.
    """
    names = list(runs)
    measured: dict[Pipeline, list[EpochTiming]] = {n: [] for n in names}
    memory: dict[Pipeline, float] = {}

    def one(name: Pipeline, label: str) -> EpochTiming:
        t = runs[name].round(max_batches, min_seconds)
        if t.images == 0:
            raise UserError(f"{name} gave no full batch of {batch}: use a smaller --batch")
        if t.gpu_memory_mb is not None:
            memory[name] = max(memory.get(name, 0.0), t.gpu_memory_mb)
        busy = _busy(t)
        echo(
            f"  {str(name):15s} res {res:4d}  {label}: {t.epochs} epoch{'s' if t.epochs > 1 else ''}, "
            f"{t.images} images in {t.seconds:.2f} s = {throughput(t.images, t.seconds):,.0f} img/s"
            + (f", {busy:.1f} cores busy" if busy is not None else "")
            + (f", +{t.gpu_memory_mb:,.0f} MiB GPU memory at peak" if t.gpu_memory_mb is not None else "")
        )
        return t

    warmed = warm_up(names, lambda n, label: _rate(one(n, label)), warmup, max_extra_warmup)
    for e in range(epochs):
        for name in names if e % 2 == 0 else names[::-1]:
            measured[name].append(one(name, f"measured {e + 1}/{epochs}"))
        if after_round is not None:
            after_round()
    return [_result(n, runs[n].details(), res, batch, workers, warmed[n], measured[n], memory.get(n)) for n in names]


def _rate(t: EpochTiming) -> float:
    return throughput(t.images, t.seconds)


def _busy(t: EpochTiming) -> float | None:
    """CPU cores busy over a round; None where not measurable or too short for /proc's ticks."""
    if t.cpu_seconds is None or t.seconds < MIN_SECONDS_FOR_CORES:
        return None
    return cores_used(t.cpu_seconds, t.seconds)


def _result(
    p: Pipeline,
    details: tuple,
    res: int,
    batch: int,
    workers: int,
    warmup: int,
    rounds: list[EpochTiming],
    gpu_memory_mb: float | None = None,
) -> LoaderResult:
    """A pipeline's figures over its measured rounds, with `details` (PipelineRun.details:
    the GPU path's decode counts and nvJPEG backend, the memory its loader added)."""
    busy = [_busy(t) for t in rounds]
    cores = spread(busy) if None not in busy else None
    counts, backend, memory_mb = details
    return LoaderResult(
        p.name,
        p.crop,
        res,
        batch,
        workers,
        warmup,
        spread([_rate(t) for t in rounds]),
        rounds[-1].images // rounds[-1].epochs,
        rounds[0].shape,
        p.decode,
        rounds[0].device,
        cores,
        counts,
        backend,
        gpu_memory_mb,
        spread([t.epochs for t in rounds]),
        memory_mb,
    )


def time_pipeline(
    pipeline: Pipeline,
    loader,
    res: int,
    batch: int,
    workers: int,
    warmup: int,
    epochs: int,
    max_batches: int | None = None,
    echo: Callable[[str], None] = print,
    min_seconds: float = 0.0,
    max_extra_warmup: int = MAX_EXTRA_WARMUP,
) -> LoaderResult:
    """One pipeline alone, in this process: warm-up rounds, then `epochs` measured rounds; their images/s."""
    return time_pipelines(
        {pipeline: PipelineRun(pipeline, loader, res)},
        res,
        batch,
        workers,
        warmup,
        epochs,
        max_batches,
        echo,
        min_seconds,
        max_extra_warmup,
    )[0]


def _check_batch(pipeline: Pipeline, x, res: int) -> None:
    """Every pipeline gives N x 3 x res x res: uint8 pixels, or normalised floats where the
    loader normalises (on a GPU, the GPU path)."""
    import torch

    normalized = pipeline.decode == "gpu" or x.device.type == "cuda"
    want = "floating point" if normalized else "uint8"
    ok_dtype = x.dtype.is_floating_point if normalized else x.dtype == torch.uint8
    if not ok_dtype or x.ndim != 4 or tuple(x.shape[1:]) != (3, res, res):
        raise RuntimeError(f"{pipeline} pipeline gave {x.dtype} {tuple(x.shape)}, not {want} Nx3x{res}x{res}")


def run_loader_bench(
    source: SourceImages | None,
    beton: Path,
    resolutions: Iterable[int],
    batch: int,
    workers: int,
    warmup: int,
    epochs: int,
    pipelines: Iterable[str] = PIPELINES,
    max_batches: int | None = None,
    echo: Callable[[str], None] = print,
    crops: Iterable[str] = ("seeded",),
    decodes: Iterable[str] = ("cpu",),
    device=None,
    min_seconds: float = MIN_ROUND_SECONDS,
    ceiling=None,
    manifest=None,
) -> list[LoaderResult]:
    """Every pipeline asked for at each resolution, the ffcv one once per crop decoder in
    `crops` and decode path in `decodes` (resolved: "cpu" or "gpu"), its batches on `device`
    (default the host), each in a process of its own, their measured rounds interleaved, with a
    round of `ceiling` (ceiling.CeilingProcess, when it has JPEGs to time) after each; rounds
    start once every process, the ceiling's too, is ready. `manifest`: the
    beton's, checked once by the caller and handed to every loader (checked by each when None)."""
    pipelines = list(pipelines)
    if source is not None and len(source.samples) < batch:
        raise UserError(f"--batch {batch} is larger than the {len(source.samples)} images: no full batch")
    if "dali" in pipelines and not dali_available():
        raise UserError(DALI_MISSING)
    device = str(device or "cpu")
    results = []
    for res in resolutions:
        specs = []
        if "ffcv" in pipelines:
            specs += [
                PipelineSpec(Pipeline("ffcv", crop, decode), beton, res, batch, workers, device, None, manifest)
                for crop in crops
                for decode in decodes
            ]
        specs += [
            PipelineSpec(Pipeline(name), beton, res, batch, workers, "cpu", source)
            for name in ("dali", "pytorch")
            if name in pipelines
        ]
        runs = {}
        try:
            for spec in specs:  # all start (import) at once
                runs[spec.pipeline] = OwnProcess(spec)
            for run in runs.values():
                run.process.wait_ready()
            after = None
            if ceiling is not None and ceiling.opened():

                def after(res=res):
                    decode, resized = ceiling.round(res)
                    echo(
                        f"  {'ceiling':15s} res {res:4d}  decode {decode:,.0f} img/s, decode + resize "
                        f"{resized:,.0f} img/s"
                    )

            results += time_pipelines(
                runs, res, batch, workers, warmup, epochs, max_batches, echo, min_seconds, after_round=after
            )
        finally:
            for run in runs.values():  # the DataLoader's persistent workers stop with their process
                run.close()
    return results


@dataclass(frozen=True)
class LoaderRow(ResultRow):
    """A `ffcv-bench loader` results row: one pipeline (the ffcv one per crop decoder and decode
    path) at one resolution. `ratio`: ffcv's and DALI's median / PyTorch's at the same
    resolution; `vs_dali`: ffcv's / DALI's."""

    BENCH = "loader"
    pipeline: str
    res: int
    batch: int
    workers: int
    images_per_second: float  # median over measured rounds
    images_per_second_min: float
    images_per_second_max: float
    runs: int  # measured rounds
    ratio: float | None
    # what was measured (the same for every row of a run)
    images: str  # the ImageFolder (or beton) as recorded_path names it
    num_images: int
    num_classes: int
    beton: str | None
    images_label: str | None  # e.g. "real photos"
    measured_rounds: int
    min_round_seconds: float
    # this pipeline's
    images_per_epoch: int
    warmup_rounds: int
    batch_shape: list
    device: str  # where its batches landed
    crop: str | None = None  # ffcv: the training crop decoder
    decode: str | None = None  # ffcv: the decode path
    cores_used: float | None = None  # CPU cores kept busy: median, min and max over measured rounds
    cores_used_min: float | None = None
    cores_used_max: float | None = None
    decode_counts: dict | None = None  # GPU path: how its samples were decoded, every epoch run
    nvjpeg_backend: str | None = None
    gpu_memory_added_mb: float | None = None  # on a GPU: the most GPU memory an epoch added
    ceiling: dict | None = None  # this machine's decode (+ resize) rates and the fraction reached
    epochs_per_round: float | None = None
    memory_added_mb: float | None = None  # anonymous memory its loader added to its process tree
    vs_dali: float | None = None


def loader_rows(measured: list[LoaderResult], run: dict, top=None) -> list[LoaderRow]:
    """The rows of one `ffcv-bench loader` run: `run` holds what was measured (LoaderRow's
    fields from `images` to `min_round_seconds`), `top` the ceiling (ceiling.Ceiling) if timed."""
    from ffcv_inat.bench.throughput.ceiling import ceiling_settings

    torch_at = {m.res: m for m in measured if m.pipeline == "pytorch"}
    dali_at = {m.res: m for m in measured if m.pipeline == "dali"}
    rows = []
    for m in measured:
        cores = m.cores
        rows.append(
            LoaderRow(
                m.pipeline,
                m.res,
                m.batch,
                m.workers,
                m.measured.median,
                m.measured.min,
                m.measured.max,
                m.measured.n,
                ratio(m.measured.median, torch_at[m.res].measured.median)
                if m.pipeline in ("ffcv", "dali") and m.res in torch_at
                else None,
                **run,
                images_per_epoch=m.images_per_epoch,
                warmup_rounds=m.warmup,
                batch_shape=list(m.shape),
                device=m.device,
                crop=m.crop,
                decode=m.decode,
                cores_used=round(cores.median, 2) if cores else None,
                cores_used_min=round(cores.min, 2) if cores else None,
                cores_used_max=round(cores.max, 2) if cores else None,
                decode_counts=m.decode_counts,
                nvjpeg_backend=m.nvjpeg_backend if m.decode_counts is not None else None,
                gpu_memory_added_mb=round(m.gpu_memory_mb, 1) if m.gpu_memory_mb is not None else None,
                ceiling=ceiling_settings(top, m.res, m.measured.median, m.decode) if top is not None else None,
                epochs_per_round=m.round_epochs.median if m.round_epochs is not None else None,
                memory_added_mb=round(m.memory_mb, 1) if m.memory_mb is not None else None,
                vs_dali=round(ratio(m.measured.median, dali_at[m.res].measured.median), 3)
                if m.pipeline == "ffcv" and m.res in dali_at
                else None,
            )
        )
    return rows
