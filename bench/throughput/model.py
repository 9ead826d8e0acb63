"""Model throughput: ResNet-50 training steps on synthetic tensors already on the device.

No data loading at all, so this is the ceiling the trainer can reach at these settings. A
step is the trainer's own (ffcv_inat.training.step.TrainStep, built by the trainer's
build_model_and_optimizer): input conversion of a loader-shaped batch, forward under
autocast, cross-entropy with the recipe's label smoothing, backward, SGD with the recipe's
parameter groups (GradScaler in fp16). On a GPU each step is timed
with CUDA events after the warm-up steps (which absorb cudnn.benchmark's search and
torch.compile), so the host never syncs inside the measured loop.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from typing import Callable

from ffcv_inat import UserError
from ffcv_inat.command_line import check_at_least

from ffcv_inat.bench.results import ResultRow
from ffcv_inat.bench.stats import Spread, spread, throughput

NUM_CLASSES = 1000  # ImageNet's head: the pretraining model the paper's grid trains most


def resolve_precision(precision: str | None, device) -> str:
    """--precision as it will run: the trainer's default (bf16) when not given; an explicit
    choice the trainer would not run as asked (fp16 on CPU, bf16 on a GPU without it) is refused,
    so that a row never claims a precision that did not run."""
    from ffcv_inat.environment import run_precision, why_precision_differs

    if precision is None:
        return run_precision("bf16", device)
    why = why_precision_differs(precision, device)
    if why:
        raise UserError(f"--precision {why}")
    return precision


def bench_config(
    res: int, batch: int, precision: str, channels_last: bool, compile: bool, blurpool: bool = False, base=None
):
    """The trainer config the model bench runs: `base` (a recipe's, for `ffcv-bench epoch`) or the
    defaults (SGD, no label smoothing), with the bench's own settings."""
    import dataclasses

    from ffcv_inat.config import Config

    cfg = base if base is not None else Config()
    return dataclasses.replace(
        cfg,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        model=dataclasses.replace(cfg.model, init=None, blurpool=blurpool if base is None else cfg.model.blurpool),
        data=dataclasses.replace(cfg.data, res=res, batch_size=batch),
    )


@dataclass(frozen=True)
class ModelResult:
    device: str
    res: int
    batch: int
    precision: str
    channels_last: bool
    compile: bool
    warmup: int
    steps: int
    step_ms: Spread  # per measured step
    images_per_second: float  # all measured images / all measured time
    peak_memory_mb: float | None
    memory_kind: str

    @property
    def images_per_second_min(self) -> float:
        return self.batch / (self.step_ms.max / 1000)

    @property
    def images_per_second_max(self) -> float:
        return self.batch / (self.step_ms.min / 1000)


def prepare_step(cfg, device, num_classes: int = NUM_CLASSES):
    """The trainer's own model, optimiser and step (ffcv_inat.training), built as it builds them."""
    from ffcv_inat.distributed import DistInfo
    from ffcv_inat.training.trainer import build_model_and_optimizer

    training = build_model_and_optimizer(cfg, num_classes, DistInfo(0, 1, 0, device))
    training.train_mode(cfg.model.freeze)  # a linear probe's backbone BatchNorm stays in eval mode
    return training.step


def synthetic_batch(batch: int, res: int, num_classes: int, device):
    """A batch as the trainer's loader delivers it: normalised, float16 on a GPU, float32 on
    the CPU, channels-last NCHW; labels as ffcv gives them."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, 3, res, res, generator=gen).to(torch.float16 if device.type == "cuda" else torch.float32)
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch,), generator=gen, dtype=torch.int32).to(device)
    return x, y


def peak_memory_mb(device) -> tuple[float, str]:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max allocated"
    # Linux reports ru_maxrss in KiB; it is the whole process's peak, not this model's alone.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak RSS of the process"


def time_steps(step: Callable, x, y, device, warmup: int, steps: int, lr: float = 0.1) -> tuple[list[float], float]:
    """Per-step milliseconds and total measured seconds, after `warmup` untimed steps."""
    import torch

    for _ in range(warmup):
        step(x, y, lr)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]
        for i in range(steps):
            starts[i].record()
            step(x, y, lr)
            ends[i].record()
        torch.cuda.synchronize(device)
        ms = [s.elapsed_time(e) for s, e in zip(starts, ends)]
        return ms, starts[0].elapsed_time(ends[-1]) / 1000
    ms = []
    begin = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        step(x, y, lr)
        ms.append((time.perf_counter() - t) * 1000)
    return ms, time.perf_counter() - begin


def run_model_bench(
    cfg, steps: int, warmup: int, device, step=None, num_classes: int = NUM_CLASSES, echo: Callable[[str], None] = print
) -> ModelResult:
    """One configuration (`cfg` from bench_config). Pass `step` to reuse one (e.g. compiled)
    across resolutions."""
    import torch

    res, batch = cfg.data.res, cfg.data.batch_size
    check_at_least(("--res", res, 32), ("--batch", batch, 1), ("--steps", steps, 1), ("--warmup", warmup, 0))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    if step is None:
        step = prepare_step(cfg, device, num_classes)
    x, y = synthetic_batch(batch, res, num_classes, device)
    echo(
        f"  model res {res} batch {batch} {step.precision} channels_last={cfg.channels_last} compile={cfg.compile} "
        f"on {device}: {warmup} warm-up + {steps} measured steps"
    )
    ms, seconds = time_steps(step, x, y, device, warmup, steps, cfg.optim.lr)
    mem, kind = peak_memory_mb(device)
    result = ModelResult(
        str(device),
        res,
        batch,
        step.precision,
        cfg.channels_last,
        cfg.compile,
        warmup,
        steps,
        spread(ms),
        throughput(batch * steps, seconds),
        mem,
        kind,
    )
    echo(
        f"  -> {result.images_per_second:,.1f} img/s, {result.step_ms.median:.1f} ms/step, peak {mem:,.0f} MB ({kind})"
    )
    return result


@dataclass(frozen=True)
class ModelRow(ResultRow):
    """A `ffcv-bench model` results row: one resolution's training-step throughput."""

    BENCH = "model"
    res: int
    batch: int
    precision: str
    channels_last: bool
    compile: bool
    images_per_second: float
    images_per_second_min: float
    images_per_second_max: float
    runs: int  # measured steps
    ms_per_step: float  # median
    peak_memory_mb: float | None
    memory_kind: str
    device: str
    warmup_steps: int
    measured_steps: int
    blurpool: bool | None = None  # written only when on
    pipeline: str = "model"

    @classmethod
    def of(cls, m: ModelResult, blurpool: bool = False) -> "ModelRow":
        return cls(
            m.res,
            m.batch,
            m.precision,
            m.channels_last,
            m.compile,
            m.images_per_second,
            m.images_per_second_min,
            m.images_per_second_max,
            m.steps,
            m.step_ms.median,
            m.peak_memory_mb,
            m.memory_kind,
            m.device,
            m.warmup,
            m.steps,
            True if blurpool else None,
        )
