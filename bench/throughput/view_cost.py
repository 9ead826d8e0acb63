"""What reading through a view costs against a standalone beton of the same samples: the
training loader's start-up (its checks, ffcv's tables over the parent's whole file, the first
batch), the memory it adds, and its images/s.

    ffcv-bench view-cost VIEW --copy BETON [--rounds 5] [--res 32] [--batch 256] [--workers 2]

Each round opens each loader in a fresh process (forked from `Isolated`'s server, the
libraries imported, nothing else), the view's and the copy's in turn, alternating which goes
first: the time from `make_loader` to the first batch, the peak RSS and anonymous memory the
loader added to the process by then and over a measured round, then its images/s over
`--min-seconds` of whole epochs after a warm-up round as long.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ffcv_inat import UserError
from ffcv_inat.bench.results import ResultRow
from ffcv_inat.bench.stats import spread, throughput
from ffcv_inat.bench.throughput.pipelines import Pipeline
from ffcv_inat.bench.throughput.usage import proc_status_kb

KINDS = ("view", "copy")
PIPELINE = Pipeline("ffcv", "seeded", "cpu")  # the trainer's CPU path, its training crop


@dataclass(frozen=True)
class LoaderSpec:
    beton: Path
    res: int
    batch: int
    workers: int


@dataclass(frozen=True)
class LoaderStart:
    """One fresh process's loader: seconds to its first batch, memory added (MiB) by then and
    at the end of its measured round (peak RSS from VmHWM, anonymous from RssAnon)."""

    first_batch_seconds: float
    rss_first_mb: float
    anon_first_mb: float
    rss_peak_mb: float = 0.0
    anon_end_mb: float = 0.0
    images_per_second: float = 0.0


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        return (proc_status_kb(f.read(), key) or 0) / 1024


def _reset_peak_rss() -> None:
    """VmHWM back to the current RSS (Linux's clear_refs 5), so the peak is the loader's."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class TimedLoader:
    """A training loader made and read to its first batch in this process, timed (`Isolated`'s factory)."""

    def __init__(self, spec: LoaderSpec):
        import torch  # noqa: F401 (imported before the baseline: no loader's memory)

        from ffcv_inat.bench.throughput.pipelines import epoch_iterator, ffcv_loader

        self.spec = spec
        _reset_peak_rss()
        rss, anon = _status_mb("VmRSS"), _status_mb("RssAnon")
        start = time.perf_counter()
        self.loader = ffcv_loader(spec.beton, spec.res, spec.batch, spec.workers)
        it, stop = epoch_iterator(PIPELINE, self.loader)
        next(it)
        seconds = time.perf_counter() - start
        stop(it)
        self.base = (rss, anon)
        self.start = LoaderStart(seconds, _status_mb("VmHWM") - rss, _status_mb("RssAnon") - anon)

    def measure(self, min_seconds: float) -> LoaderStart:
        """A warm-up round, then a measured one, each whole epochs lasting at least `min_seconds`."""
        from ffcv_inat.bench.throughput.loader import time_round

        time_round(PIPELINE, self.loader, self.spec.res, None, min_seconds)
        t = time_round(PIPELINE, self.loader, self.spec.res, None, min_seconds)
        rss, anon = self.base
        return LoaderStart(
            self.start.first_batch_seconds,
            self.start.rss_first_mb,
            self.start.anon_first_mb,
            _status_mb("VmHWM") - rss,
            _status_mb("RssAnon") - anon,
            throughput(t.images, t.seconds),
        )


def same_samples(view, copy) -> None:
    """The view and the copy hold the same classes in the same label order with the same counts."""
    a = [(c.id, c.num_images) for c in view.classes]
    b = [(c.id, c.num_images) for c in copy.classes]
    if a != b:
        raise UserError("the view and --copy hold different classes or counts: compare a view with its own copy")
    if copy.view is not None:
        raise UserError("--copy is a view: give the standalone beton of the view's classes")


def time_view_and_copy(
    view: Path, copy: Path, res: int, batch: int, workers: int, rounds: int, min_seconds: float, echo: Callable = print
) -> dict[str, list[LoaderStart]]:
    """`rounds` rounds of each, interleaved, each loader in a fresh process: {kind: measurements}."""
    from ffcv_inat.bench.throughput.isolated import Isolated

    paths = dict(zip(KINDS, (view, copy)))
    out: dict[str, list[LoaderStart]] = {k: [] for k in KINDS}
    for r in range(rounds):
        for kind in KINDS if r % 2 == 0 else KINDS[::-1]:
            with Isolated(TimedLoader, LoaderSpec(paths[kind], res, batch, workers), name=f"{kind} loader") as p:
                m = p.call(TimedLoader.measure, min_seconds)
            out[kind].append(m)
            echo(
                f"  {kind}  round {r + 1}/{rounds}: first batch {m.first_batch_seconds:.2f} s, "
                f"+{m.rss_peak_mb:,.0f} MiB peak RSS (+{m.anon_end_mb:,.0f} anonymous), "
                f"{m.images_per_second:,.0f} img/s"
            )
    return out


@dataclass(frozen=True)
class ViewCostRow(ResultRow):
    """A `ffcv-bench view-cost` row: the view's loader or its copy's, medians over rounds (each
    a fresh process). On the view's row, `ratio` is its images/s over the copy's and the
    `*_over_copy` fields are its start-up and memory minus the copy's."""

    BENCH = "view-cost"
    pipeline: str  # "view" or "copy"
    res: int
    batch: int
    workers: int
    images_per_second: float
    images_per_second_min: float
    images_per_second_max: float
    runs: int
    ratio: float | None
    beton: str  # as recorded_path names it
    num_images: int
    parent_samples: int  # samples of the file the loader opens
    first_batch_seconds: float
    first_batch_seconds_min: float
    first_batch_seconds_max: float
    rss_first_batch_mb: float  # peak RSS the loader added by its first batch
    rss_peak_mb: float  # ... by the end of its measured round
    anon_end_mb: float  # anonymous memory it added, at the end of its measured round
    min_round_seconds: float
    first_batch_seconds_over_copy: float | None = None
    rss_peak_over_copy_mb: float | None = None


def _medians(ms: list[LoaderStart]) -> dict:
    rate, first = spread([m.images_per_second for m in ms]), spread([m.first_batch_seconds for m in ms])
    med = {f: spread([getattr(m, f) for m in ms]).median for f in ("rss_first_mb", "rss_peak_mb", "anon_end_mb")}
    return {"rate": rate, "first": first, **med}


def view_cost_rows(
    measured: dict[str, list[LoaderStart]], run: dict, beton_names: dict, counts: dict
) -> list[ViewCostRow]:
    """The two rows of one run: `run` holds res, batch, workers, min_round_seconds;
    `beton_names` and `counts` ({kind: (images, parent samples)}) describe each kind's file."""
    med = {k: _medians(ms) for k, ms in measured.items()}

    def row(kind: str) -> ViewCostRow:
        m, other = med[kind], med["copy"]
        rate, first = m["rate"], m["first"]
        is_view = kind == "view"
        return ViewCostRow(
            kind,
            **run,
            images_per_second=round(rate.median, 1),
            images_per_second_min=round(rate.min, 1),
            images_per_second_max=round(rate.max, 1),
            runs=rate.n,
            ratio=round(rate.median / other["rate"].median, 3) if is_view else None,
            beton=beton_names[kind],
            num_images=counts[kind][0],
            parent_samples=counts[kind][1],
            first_batch_seconds=round(first.median, 3),
            first_batch_seconds_min=round(first.min, 3),
            first_batch_seconds_max=round(first.max, 3),
            rss_first_batch_mb=round(m["rss_first_mb"], 1),
            rss_peak_mb=round(m["rss_peak_mb"], 1),
            anon_end_mb=round(m["anon_end_mb"], 1),
            first_batch_seconds_over_copy=round(first.median - other["first"].median, 3) if is_view else None,
            rss_peak_over_copy_mb=round(m["rss_peak_mb"] - other["rss_peak_mb"], 1) if is_view else None,
        )

    return [row(k) for k in KINDS]


def describe(rows: list[ViewCostRow]) -> str:
    """The run in a few lines: both loaders, then the view's difference."""
    lines = []
    for r in rows:
        lines.append(
            f"{r.pipeline:4s} {r.beton}: {r.num_images:,} images of a file of {r.parent_samples:,}; "
            f"first batch {r.first_batch_seconds:.2f} s "
            f"({r.first_batch_seconds_min:.2f}-{r.first_batch_seconds_max:.2f}), "
            f"+{r.rss_peak_mb:,.0f} MiB peak RSS, {r.images_per_second:,.0f} img/s "
            f"({r.images_per_second_min:,.0f}-{r.images_per_second_max:,.0f}), median of {r.runs}"
        )
    v = rows[0]
    lines.append(
        f"the view: {v.first_batch_seconds_over_copy:+.2f} s to its first batch, "
        f"{v.rss_peak_over_copy_mb:+,.0f} MiB peak RSS, {v.ratio:.2f}x the copy's images/s"
    )
    return "\n".join(lines)
