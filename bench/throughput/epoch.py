"""End-to-end throughput: the real `ffcv-train` on a beton, and where its time goes.

The trainer runs as a subprocess, exactly as a user runs it, for warm-up + measured epochs
(capped at --max-steps steps each when given); its log.jsonl gives each epoch's seconds and
images/s. Then the loader alone and the model alone are timed here at the trainer's
resolved settings (same batch, resolution, workers, device, training crop decoder, decode path,
precision, channels-last, compile, BlurPool, head size), and the three throughputs give the
bottleneck verdict. Given several decode paths (`data.decode`: cpu, gpu), each gets its own
trainer run, loader-alone figure and verdict; the model alone is timed once: on a GPU both
paths hand the model a normalised batch on the device, and its step is the same.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ffcv_inat import UserError
from ffcv_inat.rundir import LOG, read_log

from ffcv_inat.bench.results import ResultRow, recorded_path
from ffcv_inat.bench.stats import (
    Spread,
    Verdict,
    bottleneck_verdict,
    extrapolate_epoch_seconds,
    spread,
    steps_per_epoch,
)

# Runs ffcv-train's click group from this interpreter: the same environment as the bench,
# with no dependence on where the console script was installed.
TRAINER = "from ffcv_inat.training.cli import main; main()"


@dataclass(frozen=True)
class TrainerSettings:
    """The trainer's resolved config, the part that sets throughput."""

    recipe: str
    device: str
    batch: int
    res: int
    workers: int
    precision: str  # what actually runs: fp32 on CPU whatever the recipe says
    channels_last: bool
    compile: bool
    num_classes: int
    num_images: int
    blurpool: bool
    augment: bool = True
    os_cache: bool = True
    crop: str = "seeded"  # the training crop decoder (data.crop)
    decode: str = "cpu"  # where the JPEGs are decoded (data.decode, resolved: cpu or gpu)

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.num_images, self.batch)

    @property
    def train_crop(self) -> str:
        from ffcv_inat.loader import training_crop

        return training_crop(self.augment, self.crop)


def resolve_settings(recipe: str, train: str, sets: list[str]) -> tuple[object, TrainerSettings]:
    """Load the config the way ffcv-train will, and fail here (one line) on what it would refuse."""
    from ffcv_inat.config import load_config, validate
    from ffcv_inat.environment import resolve_device, resolve_workers, run_precision
    from ffcv_inat.beton import read_manifest
    from ffcv_inat.loader import resolve_decode

    cfg = load_config(recipe, list(sets), {"data.train": train})
    validate(cfg)
    dev = resolve_device(cfg.device, f"{cfg.recipe}: device")
    precision = run_precision(cfg.precision, dev)
    manifest = read_manifest(cfg.data.train)
    return cfg, TrainerSettings(
        cfg.recipe,
        dev.type,
        cfg.data.batch_size,
        cfg.data.res,
        resolve_workers(cfg.data.workers),
        precision,
        cfg.channels_last,
        cfg.compile,
        cfg.model.num_classes or manifest.num_classes,
        manifest.num_images,
        cfg.model.blurpool,
        cfg.data.augment,
        cfg.data.os_cache,
        cfg.data.crop,
        resolve_decode(cfg.data.decode, dev),
    )


def trainer_command(
    recipe: str, train: str, run_dir: Path, sets: list[str], epochs: int, max_steps: int | None
) -> list[str]:
    cmd = [sys.executable, "-c", TRAINER, "--recipe", recipe, "--train", train, "--out", str(run_dir)]
    for s in sets:
        cmd += ["--set", s]
    # Training throughput only: evaluation would add wall time that no epoch figure counts.
    cmd += ["--set", f"schedule.epochs={epochs}", "--set", "data.val=null"]
    if max_steps is not None:
        cmd += ["--set", f"schedule.max_steps_per_epoch={max_steps}"]
    return cmd


def run_trainer(cmd: list[str], echo_raw: Callable[[str], None]) -> None:
    """Run the trainer, streaming its output (progress bars included) as it comes."""
    tail = ""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):
            text = chunk.decode(errors="replace")
            echo_raw(text)
            tail = (tail + text)[-4000:]
        code = proc.wait()
    if code != 0:
        lines = [ln.strip() for ln in tail.replace("\r", "\n").splitlines() if ln.strip()]
        raise UserError(f"ffcv-train failed (exit {code}): {lines[-1] if lines else 'no output'}")


@dataclass(frozen=True)
class EpochResult:
    settings: TrainerSettings
    warmup: int
    max_steps: int | None
    steps_measured: int  # per epoch
    images_per_second: Spread  # end to end, over measured epochs
    measured_epoch_seconds: Spread
    epoch_seconds: float  # of a whole epoch: measured, or extrapolated from the measured steps
    extrapolated: bool
    res: int
    loader_only: float | None = None
    model_only: float | None = None
    verdict: Verdict | None = None
    loader_counts: dict | None = None  # GPU path, loader alone: how its samples were decoded
    nvjpeg_backend: str | None = None  # GPU path on a GPU (device_decode.nvjpeg_backend)

    def describe(self) -> str:
        s = self.settings
        how = (
            f"extrapolated from {self.steps_measured} of {s.steps_per_epoch} steps per epoch"
            if self.extrapolated
            else "measured over whole epochs"
        )
        lines = [
            f"{Path(s.recipe).name} on {s.device}: batch {s.batch}, res {self.res}, {s.precision}, "
            f"channels_last={s.channels_last}, compile={s.compile}, {s.workers} workers, crop {s.train_crop}, "
            f"decode {s.decode}",
            f"end to end: {self.images_per_second.median:,.1f} img/s (min {self.images_per_second.min:,.1f}, "
            f"max {self.images_per_second.max:,.1f}, {self.images_per_second.n} measured epochs)",
            f"seconds per epoch of {s.steps_per_epoch * s.batch:,} images: {self.epoch_seconds:,.1f} ({how})",
        ]
        if self.verdict is not None:
            lines.append(f"verdict: {self.verdict.text}")
        return "\n".join(lines)


def summarize_log(log: list[dict], settings: TrainerSettings, warmup: int, max_steps: int | None) -> EpochResult:
    """Figures of the epochs after the warm-up ones; a whole epoch's seconds from their rate."""
    measured = log[warmup:]
    if not measured:
        raise UserError(f"the trainer logged {len(log)} epochs, none after the {warmup} warm-up ones")
    rates = spread([float(r["train_images_per_second"]) for r in measured])
    seconds = spread([float(r["epoch_seconds"]) for r in measured])
    steps = int(measured[-1].get("steps", settings.steps_per_epoch))
    extrapolated = steps < settings.steps_per_epoch
    full = (
        extrapolate_epoch_seconds(rates.median, settings.steps_per_epoch * settings.batch)
        if extrapolated
        else seconds.median
    )
    return EpochResult(
        settings,
        warmup,
        max_steps,
        steps,
        rates,
        seconds,
        full,
        extrapolated,
        int(measured[-1].get("res", settings.res)),
    )


def compare_parts(
    result: EpochResult, cfg, beton: str, echo: Callable[[str], None], model_only: float | None = None
) -> EpochResult:
    """Loader alone and model alone at the trainer's settings (`cfg`, its resolved config), and
    the verdict. The model alone runs the trainer's own step with the recipe's optimiser; pass
    `model_only` (images/s) to reuse a figure measured at the same settings."""
    import dataclasses

    import torch

    from ffcv_inat.environment import input_dtype

    from ffcv_inat.bench.throughput.loader import Pipeline, ffcv_loader, time_pipeline
    from ffcv_inat.bench.throughput.model import bench_config, run_model_bench

    s = result.settings
    steps = result.steps_measured
    echo(
        f"loader alone: the trainer's ffcv pipeline (decode {s.decode}), {result.warmup} warm-up + 1 measured "
        f"epoch of {steps} batches"
    )
    loader = ffcv_loader(
        Path(beton),
        result.res,
        s.batch,
        s.workers,
        device=torch.device(s.device),
        augment=s.augment,
        os_cache=s.os_cache,
        crop=s.crop,
        decode=s.decode,
        dtype=input_dtype(s.precision),
    )
    # The loader alone reads what the trainer read: whole epochs when it ran whole epochs.
    lo = time_pipeline(
        Pipeline("ffcv", s.crop, s.decode),
        loader,
        result.res,
        s.batch,
        s.workers,
        max(1, result.warmup),
        1,
        max_batches=steps if result.extrapolated else None,
        echo=echo,
        max_extra_warmup=0,
    )  # the trainer's own batches: no more
    if model_only is None:
        echo(f"model alone: {steps} steps on synthetic tensors")
        mo = run_model_bench(
            bench_config(result.res, s.batch, cfg.precision, s.channels_last, s.compile, base=cfg),
            steps,
            warmup=max(1, min(10, steps)),
            device=torch.device(s.device),
            num_classes=s.num_classes,
            echo=echo,
        )
        model_only = mo.images_per_second
    verdict = bottleneck_verdict(
        result.images_per_second.median, lo.measured.median, model_only, device="GPU" if s.device == "cuda" else "CPU"
    )
    return dataclasses.replace(
        result,
        loader_only=lo.measured.median,
        model_only=model_only,
        verdict=verdict,
        loader_counts=lo.decode_counts,
        nvjpeg_backend=lo.nvjpeg_backend,
    )


def run_epoch_bench(
    recipe: str,
    train: str,
    sets: list[str],
    warmup: int,
    epochs: int,
    max_steps: int | None,
    run_dir: str | None,
    compare: bool,
    echo: Callable[[str], None],
    echo_raw: Callable[[str], None],
    decodes: list[str] | None = None,
) -> Iterator[EpochResult]:
    """One EpochResult per decode path in `decodes` (DECODES values; None: the recipe's
    data.decode), in that order, each as soon as it is measured (a later path that fails leaves
    the earlier results); paths that resolve alike ("auto" and "gpu" on CUDA) run once. All
    settings are checked before the first run."""
    runs: dict[str, tuple[object, TrainerSettings, list[str]]] = {}
    for decode in decodes or [None]:
        run_sets = list(sets) + ([f"data.decode={decode}"] if decode else [])
        cfg, settings = resolve_settings(recipe, train, run_sets + ["data.val=null"])
        if settings.steps_per_epoch == 0:
            raise UserError(f"{train}: {settings.num_images} images make no full batch of {settings.batch}")
        runs.setdefault(settings.decode, (cfg, settings, run_sets))
    outs = {d: (Path(run_dir) / f"decode-{d}" if len(runs) > 1 else Path(run_dir)) for d in runs} if run_dir else {}
    for out in outs.values():
        if out.exists():
            raise UserError(f"--out {out} exists: the trainer refuses to reuse a run dir")
    model_only = None
    for decode, (cfg, settings, run_sets) in runs.items():
        with tempfile.TemporaryDirectory(prefix="ffcv-bench-epoch-") as tmp:
            out = outs.get(decode, Path(tmp) / "run")
            cmd = trainer_command(recipe, train, out, run_sets, warmup + epochs, max_steps)
            echo(
                f"running ffcv-train (decode {decode}): {warmup} warm-up + {epochs} measured epochs"
                + (f" of at most {max_steps} steps" if max_steps else "")
            )
            run_trainer(cmd, echo_raw)
            log = read_log(out)
            if not log:
                raise UserError(f"ffcv-train logged no epoch in {out / LOG}")
            result = summarize_log(log, settings, warmup, max_steps)
        if compare:
            # The model alone once for all paths: on a GPU both hand it a normalised batch on the
            # device, and its step does not depend on where the JPEGs were decoded.
            result = compare_parts(result, cfg, train, echo, model_only)
            model_only = result.model_only
        yield result


@dataclass(frozen=True)
class EpochRow(ResultRow):
    """A `ffcv-bench epoch` results row: the trainer end to end on one decode path."""

    BENCH = "epoch"
    res: int
    batch: int
    workers: int
    precision: str
    channels_last: bool
    compile: bool
    images_per_second: float  # median over measured epochs
    images_per_second_min: float
    images_per_second_max: float
    runs: int  # measured epochs
    ms_per_step: float
    epoch_seconds: float  # a whole epoch's, measured or extrapolated
    extrapolated: bool
    verdict: str | None
    recipe: str
    train: str  # the beton, as recorded_path names it
    device: str
    num_images: int
    steps_per_epoch: int
    steps_measured: int
    max_steps: int | None
    warmup_epochs: int
    measured_epoch_seconds: float
    num_classes: int
    blurpool: bool
    crop: str
    decode: str
    loader_only_images_per_second: float | None = None
    model_only_images_per_second: float | None = None
    limit: str | None = None  # the verdict's: data, compute or overhead
    percent_lost: float | None = None
    loader_only_decode_counts: dict | None = None  # GPU path, loader alone
    nvjpeg_backend: str | None = None
    pipeline: str = "trainer"

    @classmethod
    def of(cls, r: EpochResult, train: str) -> "EpochRow":
        s, v = r.settings, r.verdict
        return cls(
            r.res,
            s.batch,
            s.workers,
            s.precision,
            s.channels_last,
            s.compile,
            r.images_per_second.median,
            r.images_per_second.min,
            r.images_per_second.max,
            r.images_per_second.n,
            1000 * s.batch / r.images_per_second.median,
            r.epoch_seconds,
            r.extrapolated,
            v.text if v else None,
            s.recipe,
            recorded_path(Path(train).resolve()),
            s.device,
            s.num_images,
            s.steps_per_epoch,
            r.steps_measured,
            r.max_steps,
            r.warmup,
            r.measured_epoch_seconds.median,
            s.num_classes,
            s.blurpool,
            s.train_crop,
            s.decode,
            r.loader_only,
            r.model_only,
            v.limit if v else None,
            round(v.percent, 2) if v else None,
            r.loader_counts,
            r.nvjpeg_backend if r.loader_counts is not None else None,
        )
