"""The GPU data path's pixel and stream check: bench/gpu/device_run.sh's `decode_check` step.

    ffcv-bench decode-check BETON --out FILE [--images 1000] [--device cuda|cpu]

On the first --images samples of BETON, read by a real ffcv Loader with the GPU path's bytes op
(`jpeg_bytes.CompressedImageBytes`: stored bytes, training crop box and flip of --seed, epoch 0),
in batches of --batch:

  (a) stored JPEGs   torchvision's decode_jpeg on the device vs on the CPU, of the baseline JPEGs
                     (what the path sends to the device): batched, one call per batch, and one
                     by one; max and mean absolute difference in levels (0-255), and the images
                     whose sizes differ
  (b) whole path     `device_decode.images_from_rows` (decode, crop, resize, flip, normalise) on
                     the device vs on the CPU, same rows, float32: the outputs' difference times
                     ImageNet's std per channel, so again in levels
  (c) stream hazard  pytorch/vision PR #9606: nvJPEG writes its output outside the caller's
                     stream order, so a block freed while queued kernels still use it can be
                     overwritten under them. --hazard-repeats rounds: keep the GPU busy for
                     --busy-ms, queue writes and sums of tensors the size of the decoded images
                     behind that, free the tensors, then `device_decode.decode_images` (which
                     waits for the stream before decoding) decodes a batch. A round is corrupted
                     if a sum is wrong or an image differs from a decode made with nothing queued
  (d) training       the mean loss of --train-steps steps through `make_loader` with decode cpu
                     and with decode gpu: the trainer's own pieces, the same model init, order
                     and crops. Reported, not judged (cudnn and the two decoders differ a little)

Exit status 1 when (b) differs by more than MAX_MEAN_LEVELS on average or gives an image of
another size, or when (c) saw a corrupted round; (a) is reported, not judged (MAX_MEAN_LEVELS
says why). The report is written to --out before (d), the slow part, and again after it, so a
check stopped by a time limit during (d) keeps (a)-(c). `--device cpu` runs what can run
without CUDA with the CPU in the device's place: a self-check of this script (the report says
so), never evidence about nvJPEG.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ffcv_inat import UserError

from ffcv_inat.bench.data.stored_jpegs import stored_batches
from ffcv_inat.bench.machine import describe_machine, environment

# The largest mean difference, in levels of 255, that (b) accepts; a wrong colour conversion,
# crop or orientation is tens of levels. (a) is not held to it: nvJPEG's default chroma
# upsampling and libjpeg-turbo's "fancy" one differ by about 1.3 levels on the bench's images
# before any IDCT rounding, close enough to the limit that (a) would fail on filter choice.
MAX_MEAN_LEVELS = 2.0


@dataclass(frozen=True)
class PixelDiff:
    """Absolute differences between images that should match, in levels of 255."""

    images: int = 0  # compared: same size
    size_mismatches: int = 0  # not compared: sizes differ
    values: int = 0  # pixel values compared (channels included)
    total: float = 0.0  # their sum of absolute differences
    max: float = 0.0

    @property
    def mean(self) -> float:
        return self.total / self.values if self.values else 0.0

    def __add__(self, other: "PixelDiff") -> "PixelDiff":
        return PixelDiff(
            self.images + other.images,
            self.size_mismatches + other.size_mismatches,
            self.values + other.values,
            self.total + other.total,
            max(self.max, other.max),
        )

    def describe(self) -> str:
        return (
            f"max {self.max:.2f}, mean {self.mean:.3f} levels over {self.images:,} images; "
            f"{self.size_mismatches} size mismatches"
        )


def pixel_diff(got, want, images: int = 1, scale=None) -> PixelDiff:
    """|got - want| of one image (C x H x W) or a batch (`images` of them) on any device, times
    `scale` (broadcast, e.g. ImageNet's std per channel for normalised values) when given."""
    import torch

    if tuple(got.shape) != tuple(want.shape):
        return PixelDiff(size_mismatches=images)
    d = (got.detach().to("cpu", torch.float32) - want.detach().to("cpu", torch.float32)).abs()
    if scale is not None:
        d = d * scale
    if d.numel() == 0:
        return PixelDiff(images=images)
    return PixelDiff(images, 0, d.numel(), float(d.sum(dtype=torch.float64)), float(d.max()))


@dataclass(frozen=True)
class HazardResult:
    rounds: int
    busy_ms: float  # GPU work queued before each round's reads, milliseconds
    images: int  # decoded per round
    corrupted_rounds: int
    wrong_sums: int  # over all rounds
    wrong_images: int
    # The same rounds with torchvision's decode_jpeg called bare, without our wait: corrupted
    # rounds there show the test can see the hazard (0 means it could not provoke it here).
    control_rounds: int = 0
    control_corrupted: int = 0


@dataclass(frozen=True)
class TrainingLosses:
    recipe: str
    steps: int
    batch: int
    res: int
    seed: int
    losses: dict  # decode path -> mean training loss

    def describe(self) -> str:
        cpu, gpu = self.losses["cpu"], self.losses["gpu"]
        return (
            f"{self.steps} steps of batch {self.batch} at {self.res} px ({self.recipe}, seed {self.seed}): "
            f"mean loss {cpu:.4f} with decode cpu, {gpu:.4f} with decode gpu (difference {gpu - cpu:+.4f})"
        )


@dataclass(frozen=True)
class CheckReport:
    beton: str
    device: str  # "cuda" or "cpu" (the self-check)
    machine: str  # host, GPU, versions: what the figures are from
    samples: int
    beton_samples: int
    kinds: dict  # jpeg_bytes kind name -> samples
    batch: int
    res: int
    nvjpeg_backend: str | None = None
    stored_batched: PixelDiff = field(default_factory=PixelDiff)  # (a)
    stored_one_by_one: PixelDiff = field(default_factory=PixelDiff)
    path: PixelDiff = field(default_factory=PixelDiff)  # (b)
    path_counts: dict = field(default_factory=dict)  # DecodeCounts.as_dict() of (b)'s device run
    hazard: HazardResult | None = None  # (c)
    hazard_skipped: str | None = None  # why (c) did not run
    training: TrainingLosses | None = None  # (d)
    training_skipped: str | None = None
    seconds: dict = field(default_factory=dict)  # part -> wall seconds


def failures(r: CheckReport, max_mean: float = MAX_MEAN_LEVELS) -> list[str]:
    """Why the check fails (empty: it passes). Judged on (b) and (c) only: (a) compares the two
    decoders bare, whose chroma upsampling alone differs by about as much as the limit (see
    MAX_MEAN_LEVELS), so it is reported, not judged."""
    out = []
    if r.path.mean > max_mean:
        out.append(f"(b) whole path: mean difference {r.path.mean:.3f} levels > {max_mean:g}")
    if r.path.size_mismatches:
        out.append(f"(b) whole path: {r.path.size_mismatches} images of another size")
    if r.hazard is not None and r.hazard.corrupted_rounds:
        out.append(f"(c) stream hazard: {r.hazard.corrupted_rounds} of {r.hazard.rounds} rounds corrupted")
    return out


def format_report(r: CheckReport, max_mean: float = MAX_MEAN_LEVELS) -> str:
    from ffcv_inat.bench.report import describe_decode_counts

    dev = "the CPU" if r.device == "cpu" else r.device
    kinds = ", ".join(f"{n:,} {k}" for k, n in r.kinds.items())
    lines = [
        f"GPU data path check of {r.beton}: first {r.samples:,} of {r.beton_samples:,} samples ({kinds}), "
        f"batches of {r.batch}, device {r.device}",
        f"machine: {r.machine}",
    ]
    if r.device == "cpu":
        lines.append(
            "device cpu: a self-check of this script with the CPU in the device's place; nvJPEG is not "
            "involved, so these figures say nothing about the GPU path"
        )
    if r.nvjpeg_backend is not None:
        lines.append(f"nvJPEG backend: {r.nvjpeg_backend}")
    lines += [
        f"(a) stored baseline JPEGs, torchvision decode_jpeg on {dev} vs on the CPU:",
        f"    batched (one call per batch): {r.stored_batched.describe()}",
        f"    one by one:                   {r.stored_one_by_one.describe()}",
        f"(b) whole path (images_from_rows, {r.res} px, float32) on {dev} vs on the CPU, in levels: "
        f"{r.path.describe()}",
        f"    the device run decoded {describe_decode_counts(r.path_counts)}",
    ]
    if r.hazard is not None:
        h = r.hazard
        lines.append(
            f"(c) stream hazard (pytorch/vision PR #9606): {h.rounds} rounds of {h.busy_ms:g} ms queued "
            f"work on tensors freed before decode_images, {h.images} images a round: {h.corrupted_rounds} "
            f"corrupted rounds ({h.wrong_sums} wrong sums, {h.wrong_images} wrong images); control, "
            f"decode_jpeg with no wait before it: {h.control_corrupted} of {h.control_rounds} rounds "
            "corrupted (above 0: the test sees the hazard our wait prevents; 0: it could not provoke it)"
        )
    else:
        lines.append(f"(c) stream hazard: not run ({r.hazard_skipped})")
    if r.training is not None:
        lines.append(f"(d) training, {r.training.describe()}")
    else:
        lines.append(f"(d) training: not run ({r.training_skipped})")
    if r.seconds:
        lines.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in r.seconds.items()))
    why = failures(r, max_mean)
    limits = (
        f"(b): mean difference <= {max_mean:g} levels, no image of another size; (c): no corrupted round; "
        "(a) is reported, not judged"
    )
    lines.append(f"result: FAIL: {'; '.join(why)}" if why else f"result: PASS ({limits})")
    return "\n".join(lines)


# ------------------------------------------------------------------ the parts that run things


def _quiet(device) -> None:
    """Nothing queued on the device before a bare decode_jpeg: (a) tests decoding, not the hazard."""
    import torch

    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()


def stored_jpeg_diffs(rows: np.ndarray, headers: np.ndarray, device) -> tuple[PixelDiff, PixelDiff]:
    """(a) for one batch: (batched, one by one) differences of decode_jpeg on `device` from
    decode_jpeg on the CPU, over its baseline JPEGs."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    from ffcv_inat.loader import JPEG_BATCHED, payload

    datas = [
        torch.from_numpy(payload(rows, headers, i)) for i in range(len(headers)) if int(headers[i, 1]) == JPEG_BATCHED
    ]
    if not datas:
        return PixelDiff(), PixelDiff()
    want = [decode_jpeg(d, mode=ImageReadMode.RGB) for d in datas]
    _quiet(device)
    batched = sum(
        (pixel_diff(g, w) for g, w in zip(decode_jpeg(datas, mode=ImageReadMode.RGB, device=device), want)), PixelDiff()
    )
    one = PixelDiff()
    for d, w in zip(datas, want):
        _quiet(device)
        one = one + pixel_diff(decode_jpeg(d, mode=ImageReadMode.RGB, device=device), w)
    return batched, one


def path_diff(rows: np.ndarray, headers: np.ndarray, device, res: int) -> tuple[PixelDiff, object]:
    """(b) for one batch: images_from_rows on `device` vs on the CPU, in levels; and the device
    run's DecodeCounts."""
    import torch

    from ffcv_inat.loader import images_from_rows
    from ffcv_inat.loader import IMAGENET_STD

    got, counts = images_from_rows(rows, headers, device, (res, res), torch.float32)
    want, _ = images_from_rows(rows, headers, torch.device("cpu"), (res, res), torch.float32)
    scale = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)  # normalised units -> levels
    return pixel_diff(got, want, images=len(headers), scale=scale), counts


def _sleep_cycles(ms: float, device) -> int:
    """GPU clock cycles that torch.cuda._sleep spins for about `ms` milliseconds on `device`."""
    import torch

    probe = 10_000_000
    torch.cuda._sleep(1000)  # the first launch pays for loading the kernel: not part of the probe
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.cuda._sleep(probe)
    end.record()
    end.synchronize()
    return int(probe / max(start.elapsed_time(end), 1e-3) * ms)


def _bare_decode(rows: np.ndarray, headers: np.ndarray, device) -> list:
    """The baseline JPEGs of a batch by torchvision's decode_jpeg alone, with no wait before it:
    the hazard's control."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    from ffcv_inat.loader import JPEG_BATCHED, payload

    datas = [
        torch.from_numpy(payload(rows, headers, i)) for i in range(len(headers)) if int(headers[i, 1]) == JPEG_BATCHED
    ]
    return decode_jpeg(datas, mode=ImageReadMode.RGB, device=device) if datas else []


def stream_hazard(
    rows: np.ndarray, headers: np.ndarray, device, rounds: int, busy_ms: float, control_rounds: int = 10
) -> HazardResult:
    """(c): see the module. Needs CUDA."""
    import torch

    from ffcv_inat.loader import decode_images

    def ours():
        return decode_images(rows, headers, device)[0]

    def bare():
        return _bare_decode(rows, headers, device)

    torch.cuda.synchronize(device)
    cycles = _sleep_cycles(busy_ms, device)
    corrupted, wrong_sums, wrong_images = _hazard_rounds(ours, rounds, cycles, device)
    control, _, _ = _hazard_rounds(bare, control_rounds, cycles, device)
    return HazardResult(rounds, busy_ms, len(ours()), corrupted, wrong_sums, wrong_images, control_rounds, control)


def _hazard_rounds(decode: Callable[[], list], rounds: int, cycles: int, device) -> tuple[int, int, int]:
    """(corrupted rounds, wrong sums, wrong images) of `rounds` rounds of `decode` decoding into
    memory freed while queued kernels still use it."""
    import torch

    torch.cuda.synchronize(device)
    reference = [im.cpu() for im in decode()]  # nothing queued
    sizes = [im.numel() for im in reference]
    corrupted = wrong_sums = wrong_images = 0
    for r in range(rounds):
        values = [(7 * r + j) % 250 + 1 for j in range(len(sizes))]  # 1..250, so +1 stays in uint8
        held = [torch.full((s,), v, dtype=torch.uint8, device=device) for s, v in zip(sizes, values)]
        torch.cuda._sleep(cycles)  # the GPU is busy for busy_ms before the writes and reads below run
        for t in held:
            t.add_(1)
        sums = torch.stack([t.sum(dtype=torch.int64) for t in held])
        # Freed while those kernels wait: the caching allocator may give these very blocks (same
        # sizes) to the decode's outputs at once.
        del held, t
        images = decode()
        got = sums.cpu().tolist()
        bad_sums = sum(g != (v + 1) * s for g, v, s in zip(got, values, sizes))
        bad_images = sum(not torch.equal(im.cpu(), ref) for im, ref in zip(images, reference))
        corrupted += bool(bad_sums or bad_images)
        wrong_sums += bad_sums
        wrong_images += bad_images
    return corrupted, wrong_sums, wrong_images


def training_losses(
    recipe: str, beton: Path, device, steps: int, batch: int, res: int, workers: int, seed: int
) -> TrainingLosses:
    """(d): the trainer's own pieces (read_data, build_model_and_optimizer, create_loaders,
    train_one_epoch) once per decode path; build_model_and_optimizer seeds the init with `seed`,
    which also sets the order and the crops."""

    from ffcv_inat.config import load_config, validate
    from ffcv_inat.distributed import DistInfo
    from ffcv_inat.loader import keep_alive
    from ffcv_inat.training.progress import StepProgress
    from ffcv_inat.training.trainer import build_model_and_optimizer, create_loaders, read_data, train_one_epoch

    losses = {}
    for decode in ("cpu", "gpu"):
        cfg = load_config(
            recipe,
            [
                f"data.decode={decode}",
                f"data.batch_size={batch}",
                f"data.res={res}",
                f"data.workers={workers}",
                "data.val=null",
                f"seed={seed}",
                f"device={device.type}",
            ],
            {"data.train": str(beton)},
        )
        validate(cfg)
        info = DistInfo(0, 1, 0, device)
        data = read_data(cfg, decode)  # resolved: check_training has allowed gpu on this device
        t = build_model_and_optimizer(cfg, data.num_classes, info)
        loader, _ = create_loaders(cfg, info, data, 0)
        keep_alive(loader)
        loader.set_epoch(0)
        quiet = StepProgress("off", 1, batch, 0)
        losses[decode], done, _, _ = train_one_epoch(t, loader, cfg, info, 0, min(steps, len(loader)), quiet)
    return TrainingLosses(Path(recipe).name, done, batch, res, seed, losses)


@dataclass(frozen=True)
class CheckSettings:
    """What the check runs: see the command's options."""

    samples: int = 1000
    batch: int = 256
    res: int = 224
    workers: int = 0  # ffcv workers; 0: all usable cores (resolved by the command)
    seed: int = 0
    hazard_rounds: int = 50
    busy_ms: float = 200.0
    train_steps: int = 30
    train_batch: int = 64
    recipe: str = "pretrain_90ep.yaml"


# What a report written before (d) says of it: a check stopped by its time limit keeps (a)-(c).
TRAINING_PENDING = "not finished: the check was stopped while (d) ran"


def compare_pixels(beton: Path, device, s: CheckSettings, echo: Callable[[str], None]) -> tuple[CheckReport, tuple]:
    """(a) and (b) over the first `s.samples` samples; the report so far and the first batch's
    (rows, headers), which (c) decodes."""
    from ffcv_inat.beton import check_beton
    from ffcv_inat.loader import DecodeCounts
    from ffcv_inat.loader import KIND_NAMES

    manifest = check_beton(beton)  # a damaged beton is a one-line error, not ffcv's
    n = min(s.samples, manifest.num_images)
    kinds = dict.fromkeys(KIND_NAMES.values(), 0)
    batched = one = path = PixelDiff()
    counts = DecodeCounts()
    first = None
    seconds = {"(a)": 0.0, "(b)": 0.0}
    t0 = time.perf_counter()
    for rows, headers in stored_batches(beton, n, s.batch, s.workers, s.seed, manifest):
        first = first or (rows, headers)
        for k in headers[:, 1]:
            kinds[KIND_NAMES[int(k)]] += 1
        t = time.perf_counter()
        b, o = stored_jpeg_diffs(rows, headers, device)
        batched, one = batched + b, one + o
        seconds["(a)"] += time.perf_counter() - t
        t = time.perf_counter()
        p, c = path_diff(rows, headers, device, s.res)
        path = path + p
        counts.add(c)
        seconds["(b)"] += time.perf_counter() - t
    if first is None:
        raise UserError(f"{beton}: no samples to check")
    seconds = {"reading + (a) + (b)": time.perf_counter() - t0, **seconds}
    echo(f"(a) batched {batched.describe()}; one by one {one.describe()}")
    echo(f"(b) {path.describe()}")
    report = CheckReport(
        beton.name,
        device.type,
        describe_machine(environment()),
        n,
        manifest.num_images,
        kinds,
        s.batch,
        s.res,
        stored_batched=batched,
        stored_one_by_one=one,
        path=path,
        path_counts=dict(counts.as_dict(), first_failure=(counts.failed_batches or [None])[0]),
        seconds=seconds,
    )
    return report, first


def check_hazard(
    report: CheckReport, first: tuple, device, s: CheckSettings, echo: Callable[[str], None]
) -> CheckReport:
    """(c) where it can run (CUDA, rounds asked for, torch.cuda._sleep), else why not."""
    import torch

    if device.type != "cuda":
        return replace(report, hazard_skipped="needs CUDA: the hazard is between CUDA streams")
    if s.hazard_rounds == 0:
        return replace(report, hazard_skipped="--hazard-repeats 0")
    if not hasattr(torch.cuda, "_sleep"):
        return replace(report, hazard_skipped="this torch has no torch.cuda._sleep to keep the GPU busy")
    t = time.perf_counter()
    hazard = stream_hazard(*first, device, s.hazard_rounds, s.busy_ms)
    echo(f"(c) {hazard.corrupted_rounds} corrupted rounds of {s.hazard_rounds}")
    return replace(report, hazard=hazard, seconds={**report.seconds, "(c)": time.perf_counter() - t})


def check_training(
    report: CheckReport, beton: Path, device, s: CheckSettings, echo: Callable[[str], None]
) -> CheckReport:
    """(d) where the GPU path can run on `device` (on the CPU only with $FFCV_INAT_GPU_PATH_ON_CPU=1)."""
    from ffcv_inat.loader import resolve_decode

    try:
        resolve_decode("gpu", device)
    except UserError as e:
        return replace(report, training_skipped=str(e))
    if s.train_steps == 0:
        return replace(report, training_skipped="--train-steps 0")
    t = time.perf_counter()
    training = training_losses(s.recipe, beton, device, s.train_steps, s.train_batch, s.res, s.workers, s.seed)
    echo(f"(d) {training.describe()}")
    return replace(
        report, training=training, training_skipped=None, seconds={**report.seconds, "(d)": time.perf_counter() - t}
    )


def run_check(
    beton: str | Path,
    device,
    s: CheckSettings,
    echo: Callable[[str], None] = print,
    keep: Callable[[CheckReport], None] = lambda r: None,
) -> CheckReport:
    """Every part that can run on `device`; see the module. `keep` gets the report before (d),
    the slow part, and again at the end, so a check stopped during (d) leaves (a)-(c)."""
    from ffcv_inat.environment import resolve_workers
    from ffcv_inat.loader import indexed, nvjpeg_backend

    beton, device = Path(beton), indexed(device)  # one device object: torchvision rebuilds nvJPEG on a change
    s = replace(s, workers=resolve_workers(s.workers))  # 0: this process's share of the usable cores
    report, first = compare_pixels(beton, device, s, echo)
    report = check_hazard(report, first, device, s, echo)
    if device.type == "cuda":
        report = replace(report, nvjpeg_backend=nvjpeg_backend())
    keep(replace(report, training_skipped=TRAINING_PENDING))
    report = check_training(report, beton, device, s, echo)
    keep(report)
    return report
