"""The arithmetic of the bench suite, as pure functions so tests can pin it on given numbers."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

# End to end within this share of model-only speed counts as "the device is the limit":
# run-to-run noise of a few percent must not be reported as a data-loading problem.
COMPUTE_BOUND_TOLERANCE = 0.05


@dataclass(frozen=True)
class Spread:
    median: float
    min: float
    max: float
    n: int


def spread(values: Sequence[float]) -> Spread:
    """Median, min and max of repeated measurements (the median resists one slow outlier)."""
    if not values:
        raise ValueError("no measurements")
    return Spread(statistics.median(values), min(values), max(values), len(values))


def spread_factor(s: Spread) -> float:
    """max / min of the measurements: 1.15 means the fastest was 15% above the slowest."""
    return s.max / s.min if s.min > 0 else math.inf


def settled(rates: Sequence[float], tolerance: float) -> bool:
    """Whether the last two rates agree within `tolerance` (max / min - 1); a warm-up has
    settled then."""
    if len(rates) < 2:
        return False
    a, b = rates[-2:]
    return min(a, b) > 0 and max(a, b) / min(a, b) - 1 <= tolerance


def throughput(images: int, seconds: float) -> float:
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    return images / seconds


def ratio(ours: float, theirs: float) -> float:
    """How many times faster `ours` is than `theirs` (both in images/s)."""
    if theirs <= 0:
        raise ValueError(f"baseline throughput must be positive, got {theirs}")
    return ours / theirs


def extrapolate_epoch_seconds(images_per_second: float, images_per_epoch: int) -> float:
    """Seconds a whole epoch takes at the measured rate (when only some steps were run)."""
    if images_per_second <= 0:
        raise ValueError(f"images/s must be positive, got {images_per_second}")
    return images_per_epoch / images_per_second


def steps_per_epoch(num_images: int, batch: int, drop_last: bool = True) -> int:
    return num_images // batch if drop_last else math.ceil(num_images / batch)


@dataclass(frozen=True)
class Verdict:
    limit: str  # "data", "compute" or "overhead"
    percent: float  # share of model-only throughput lost end to end, in percent
    text: str


def bottleneck_verdict(
    end_to_end: float,
    loader_only: float,
    model_only: float,
    device: str = "GPU",
    tolerance: float = COMPUTE_BOUND_TOLERANCE,
) -> Verdict:
    """Where the time goes, from three throughputs (images/s) at the same settings.

    The model alone is the best training can do; the share of it lost end to end is the
    cost of everything else. If the loader alone is slower than the model, loading explains
    the loss; if both alone are faster than end to end, the loss is overhead of running them
    together (host syncs in the loop, the two competing for CPU cores).
    """
    for name, v in (("end-to-end", end_to_end), ("loader-only", loader_only), ("model-only", model_only)):
        if v <= 0:
            raise ValueError(f"{name} throughput must be positive, got {v}")
    lost = max(0.0, 1.0 - end_to_end / model_only)
    pct = 100.0 * lost
    figures = (
        f"end to end {end_to_end:.1f} img/s, loader alone {loader_only:.1f} img/s, model alone {model_only:.1f} img/s"
    )
    if lost <= tolerance:
        return Verdict(
            "compute",
            pct,
            f"the {device} is the limit: end to end runs at {100 - pct:.0f}% of model-only speed ({figures})",
        )
    if loader_only < model_only:
        return Verdict("data", pct, f"data loading limits you by {pct:.0f}% ({figures})")
    return Verdict(
        "overhead",
        pct,
        f"neither part alone explains it: you lose {pct:.0f}% to running "
        f"them together (syncs, contention for CPU cores) ({figures})",
    )


@dataclass(frozen=True)
class CostPrediction:
    epochs: int
    images_per_epoch: int
    images_per_second: float
    gpus: int
    seconds: float

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    @property
    def device_hours(self) -> float:
        """Wall hours times the devices (`gpus`) that produced the throughput."""
        return self.hours * self.gpus


def predict_cost(epochs: int, images_per_epoch: int, images_per_second: float, gpus: int = 1) -> CostPrediction:
    """Wall time of a whole run: epochs x images per epoch / images per second.

    images_per_second is the whole machine's measured rate (all `gpus` of it together), so
    device-hours (e.g. H100-hours) are wall hours times the GPUs that produced that rate.
    """
    if epochs < 1 or images_per_epoch < 1:
        raise ValueError("epochs and images per epoch must be at least 1")
    if images_per_second <= 0:
        raise ValueError(f"images/s must be positive, got {images_per_second}")
    if gpus < 1:
        raise ValueError(f"gpus must be at least 1, got {gpus}")
    return CostPrediction(
        epochs, images_per_epoch, images_per_second, gpus, epochs * images_per_epoch / images_per_second
    )


def cores_used(cpu_seconds: float, wall_seconds: float) -> float:
    """CPU cores kept busy on average: CPU seconds (user + system, all threads and processes)
    per wall second."""
    if wall_seconds <= 0:
        raise ValueError(f"wall seconds must be positive, got {wall_seconds}")
    return cpu_seconds / wall_seconds


# The GPU data path's goal, as its issue states it: this many images/s at this resolution from a
# loader that keeps at most this many CPU cores busy.
TARGET_IMAGES_PER_SECOND = 8000.0
TARGET_RES = 224
TARGET_CORES = 2.0
# Two decode paths within this share of each other are a tie: epoch-to-epoch spread on a shared
# machine is of this size.
DECODE_TIE_TOLERANCE = 0.03
DECODE_ORDER = ("cpu", "gpu")


@dataclass(frozen=True)
class DecodeFigure:
    """One decode path's throughput at one resolution, and the CPU cores it used (None: not measured)."""

    images_per_second: float
    cores: float | None = None


def _figure(decode: str, f: DecodeFigure) -> str:
    cores = f" on {f.cores:.1f} cores" if f.cores is not None else ""
    return f"{decode} {f.images_per_second:,.0f} img/s{cores}"


def ordered_decodes(decodes) -> list[str]:
    """Decode paths in the order tables and verdicts list them: cpu, gpu, then any other."""
    return sorted(decodes, key=lambda d: (DECODE_ORDER.index(d) if d in DECODE_ORDER else len(DECODE_ORDER), d))


def decode_verdict(
    figures: dict[int, dict[str, DecodeFigure]], basis: str, tolerance: float = DECODE_TIE_TOLERANCE
) -> str | None:
    """Which decode path ("cpu", "gpu") to use on the machine that measured `figures`
    ({res: {decode: figure}}), judged by `basis` ("end to end", or "the loader alone" when only
    loader figures exist), with the numbers. Resolutions with one path only are left out; None
    when no resolution has two. Paths within `tolerance` of each other tie; when every
    resolution ties, the path that kept fewer CPU cores busy is preferred, if cores were measured."""
    compared = {res: f for res, f in sorted(figures.items()) if len(f) >= 2}
    if not compared:
        return None
    winners: dict[int, str | None] = {}  # None: a tie
    details = []
    for res, f in compared.items():
        best, second = sorted(f, key=lambda d: f[d].images_per_second, reverse=True)[:2]
        factor = ratio(f[best].images_per_second, f[second].images_per_second)
        winners[res] = best if factor - 1 > tolerance else None
        details.append(f"res {res}: {' vs '.join(_figure(d, f[d]) for d in ordered_decodes(f))} = {best} {factor:.2f}x")
    numbers = f"({'; '.join(details)})"
    decided = {w for w in winners.values() if w is not None}
    if len(decided) > 1:
        per_res = ", ".join(f"{w or 'tie'} at res {res}" for res, w in winners.items())
        return (
            f"no single faster decode path by {basis} ({per_res}): use the faster one at your training "
            f"resolution {numbers}"
        )
    if decided:
        (best,) = decided
        how = "faster" if None not in winners.values() else f"faster or within {100 * tolerance:.0f}%"
        where = "at every resolution" if len(compared) > 1 else f"at res {next(iter(compared))}"
        return f"use decode {best} on this machine: by {basis} it is {how} {where} {numbers}"
    cores: dict[str, list[float]] = {}
    for f in compared.values():
        for d, fig in f.items():
            if fig.cores is not None:
                cores.setdefault(d, []).append(fig.cores)
    lighter = ""
    if len(cores) >= 2:
        fewest = min(cores, key=lambda d: sum(cores[d]) / len(cores[d]))
        lighter = f"; prefer decode {fewest}, which keeps fewer CPU cores busy"
    return f"either decode path: by {basis} they are within {100 * tolerance:.0f}% (noise){lighter} {numbers}"


def target_verdict(
    figures: dict[int, dict[str, DecodeFigure]],
    images_per_second: float = TARGET_IMAGES_PER_SECOND,
    res: int = TARGET_RES,
    cores: float = TARGET_CORES,
) -> str | None:
    """Whether each decode path meets the GPU data path's goal (at least `images_per_second` at
    `res` px on at most `cores` CPU cores), from loader figures; None without figures at `res`."""
    at = figures.get(res)
    if not at:
        return None
    parts = []
    for d in ordered_decodes(at):
        f = at[d]
        if f.cores is None:
            parts.append(f"{d} decode: cores not measured ({_figure(d, f)})")
            continue
        met = f.images_per_second >= images_per_second and f.cores <= cores
        parts.append(f"{d} decode {'meets' if met else 'misses'} it ({_figure(d, f)})")
    return f"target >= {images_per_second:,.0f} img/s at {res} px on <= {cores:g} CPU cores: " + "; ".join(parts)


def ceiling_sentence(rate: float, decode_resize: Spread, decode: Spread, threads: int) -> str:
    """A loader's rate against this machine's CPU ceiling (bench/throughput/ceiling.py) on the same JPEGs:
    the fraction of decode + resize it reaches, and what decode alone would give."""
    if decode_resize.median <= 0 or decode.median <= 0:
        raise ValueError("ceiling rates must be positive")
    return (
        f"{rate:,.0f} img/s = {100 * rate / decode_resize.median:.0f}% of this machine's decode + resize "
        f"ceiling ({decode_resize.median:,.0f} img/s, spread {spread_factor(decode_resize):.2f}x, "
        f"{threads} thread{'s' if threads != 1 else ''}); decode alone would be {decode.median:,.0f} img/s "
        f"({decode.median / decode_resize.median:.2f}x decode + resize)"
    )
