"""Model throughput: ResNet-50 training steps on synthetic tensors already on the device.

No data loading at all, so this is the ceiling the trainer can reach at these settings. A
step is what the trainer does: zero_grad(set_to_none), forward under autocast,
cross-entropy, backward, SGD step (with GradScaler in fp16). On a GPU each step is timed
with CUDA events after the warm-up steps (which absorb cudnn.benchmark's search and
torch.compile), so the host never syncs inside the measured loop.
"""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from typing import Callable

from ffcv_inat import UserError

from .stats import Spread, spread, throughput

PRECISIONS = ("bf16", "fp16", "fp32")
NUM_CLASSES = 1000  # ImageNet's head: the pretraining model the paper's grid trains most


def resolve_device(name: str | None):
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: not a torch device: {name!r} (use cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible on this machine")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got {name!r}")
    return device


def resolve_precision(precision: str | None, device) -> str:
    import torch

    if precision is None:  # the trainer's default: bf16 autocast on a GPU, plain fp32 on CPU
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        # CPU autocast in fp16 is emulated, tens of times slower than fp32: a meaningless figure.
        raise UserError("--precision fp16 needs a CUDA GPU; on CPU use bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--precision bf16: {torch.cuda.get_device_name(device)} does not support bf16; use fp16")
    return precision


def build_resnet50(num_classes: int = NUM_CLASSES, blurpool: bool = False):
    """The trainer's ResNet-50 (torchvision's, random init; BlurPool adds a filter per strided conv)."""
    from ffcv_inat.model import build_model

    return build_model(num_classes, blurpool=blurpool)


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


def make_train_step(model, device, precision: str, lr: float = 0.1) -> Callable:
    import torch
    import torch.nn.functional as F

    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32"):
            loss = F.cross_entropy(model(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    return step


def peak_memory_mb(device) -> tuple[float, str]:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max allocated"
    # Linux reports ru_maxrss in KiB; it is the whole process's peak, not this model's alone.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak RSS of the process"


def time_steps(step: Callable, x, y, device, warmup: int, steps: int) -> tuple[list[float], float]:
    """Per-step milliseconds and total measured seconds, after `warmup` untimed steps."""
    import torch

    for _ in range(warmup):
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]
        for i in range(steps):
            starts[i].record()
            step(x, y)
            ends[i].record()
        torch.cuda.synchronize(device)
        ms = [s.elapsed_time(e) for s, e in zip(starts, ends)]
        return ms, starts[0].elapsed_time(ends[-1]) / 1000
    ms = []
    begin = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        step(x, y)
        ms.append((time.perf_counter() - t) * 1000)
    return ms, time.perf_counter() - begin


def run_model_bench(res: int, batch: int, precision: str | None, channels_last: bool, compile: bool,
                    steps: int, warmup: int, device: str | None = None, model=None,
                    num_classes: int = NUM_CLASSES, blurpool: bool = False,
                    echo: Callable[[str], None] = print) -> ModelResult:
    """One configuration. Pass `model` to reuse one (e.g. compiled) across resolutions."""
    import torch

    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    for name, v, least in (("--res", res, 32), ("--batch", batch, 1), ("--steps", steps, 1), ("--warmup", warmup, 0)):
        if v < least:
            raise UserError(f"{name} must be at least {least}, got {v}")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(dev)
    if model is None:
        model = prepare_model(dev, channels_last, compile, num_classes, blurpool)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, 3, res, res, generator=gen).to(dev).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,), generator=gen).to(dev)
    echo(f"  model res {res} batch {batch} {precision} channels_last={channels_last} compile={compile} "
         f"on {dev}: {warmup} warm-up + {steps} measured steps")
    ms, seconds = time_steps(make_train_step(model, dev, precision), x, y, dev, warmup, steps)
    mem, kind = peak_memory_mb(dev)
    result = ModelResult(str(dev), res, batch, precision, channels_last, compile, warmup, steps, spread(ms),
                         throughput(batch * steps, seconds), mem, kind)
    echo(f"  -> {result.images_per_second:,.1f} img/s, {result.step_ms.median:.1f} ms/step, peak {mem:,.0f} MB ({kind})")
    return result


def prepare_model(device, channels_last: bool, compile: bool, num_classes: int = NUM_CLASSES, blurpool: bool = False):
    import torch

    model = build_resnet50(num_classes, blurpool).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        # dynamic=False: one static graph per resolution, as the trainer gets at a fixed res.
        model = torch.compile(model, dynamic=False)
    return model
