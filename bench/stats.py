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


def bottleneck_verdict(end_to_end: float, loader_only: float, model_only: float, device: str = "GPU",
                       tolerance: float = COMPUTE_BOUND_TOLERANCE) -> Verdict:
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
    figures = (f"end to end {end_to_end:.1f} img/s, loader alone {loader_only:.1f} img/s, "
               f"model alone {model_only:.1f} img/s")
    if lost <= tolerance:
        return Verdict("compute", pct, f"the {device} is the limit: end to end runs at "
                                       f"{100 - pct:.0f}% of model-only speed ({figures})")
    if loader_only < model_only:
        return Verdict("data", pct, f"data loading limits you by {pct:.0f}% ({figures})")
    return Verdict("overhead", pct, f"neither part alone explains it: you lose {pct:.0f}% to running "
                                    f"them together (syncs, contention for CPU cores) ({figures})")


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
    return CostPrediction(epochs, images_per_epoch, images_per_second, gpus,
                          epochs * images_per_epoch / images_per_second)


# Words of a GPU's name that say who made it or its product line, not which card it is.
_MAKER_WORDS = {"nvidia", "amd", "intel", "tesla", "geforce", "quadro", "radeon", "instinct"}
# Series words that only name a card together with the model after them (RTX 4090, RTX A6000).
_SERIES_WORDS = {"rtx", "gtx", "titan"}


def is_cpu_device(gpu: object) -> bool:
    """The results rows' gpu column says "none" for a CPU-only machine (also accepted: "cpu")."""
    return str(gpu).strip().lower() in ("none", "cpu")


def card_name(gpu: object) -> str | None:
    """A short name of a GPU card from its full name (torch.cuda.get_device_name, a results row's
    `gpu`): "NVIDIA H100 80GB HBM3" -> "H100", "NVIDIA A100-SXM4-40GB" -> "A100",
    "NVIDIA GeForce RTX 4090" -> "RTX 4090". None for no GPU ("none", "cpu") or no name ("", NaN).
    """
    text = "" if gpu is None else str(gpu).strip()
    if not text or text.lower() == "nan" or is_cpu_device(text):
        return None
    words = [w for w in text.split() if w.lower() not in _MAKER_WORDS] or text.split()
    first = words[0].split("-")[0]
    if first.lower() in _SERIES_WORDS and len(words) > 1:
        return f"{first} {words[1].split('-')[0]}"
    return first
