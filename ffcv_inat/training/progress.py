"""Progress inside an epoch: a per-step bar on a terminal, a plain line every N seconds elsewhere.

Both say the same figures: step of the epoch, img/s since the last report, the loss and LR,
and the ETA of the epoch and of the run. The ETAs count training steps at the rate measured so
far in this epoch (evaluation time is not in them). The loss is whatever the trainer last read
back from the device (every `log_every` steps): the reporter never synchronises with it.

`eta_seconds`, `format_duration` and `progress_line` are pure, so tests pin them exactly.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from tqdm import tqdm

# logging.progress: "auto" = the bar on a terminal, lines otherwise (SLURM logs, pipes).
PROGRESS_MODES = ("auto", "bar", "lines", "off")


def eta_seconds(done: int, total: int, elapsed: float) -> float | None:
    """Seconds left for `total` units at the rate of the `done` that took `elapsed`; None before any."""
    if done <= 0 or elapsed <= 0:
        return None
    return max(0, total - done) * elapsed / done


def format_duration(seconds: float | None) -> str:
    """1:02:03 for an hour and more, 4:05 below, 1d 2:03:04 past a day, ? when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    days, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    clock = f"{h}:{m:02d}:{s:02d}" if h or days else f"{m}:{s:02d}"
    return f"{days}d {clock}" if days else clock


@dataclass(frozen=True)
class StepFigures:
    """Where a run stands at one step, as a report says it."""

    epoch: int  # 0-based
    epochs: int
    step: int  # steps done in this epoch
    steps: int  # steps of this epoch
    images_per_second: float | None
    loss: float | None  # the last loss read back from the device
    lr: float
    epoch_eta: float | None
    run_eta: float | None


def progress_line(f: StepFigures) -> str:
    """One plain progress line (the line mode's output)."""
    rate = "? img/s" if f.images_per_second is None else f"{f.images_per_second:,.0f} img/s"
    loss = "?" if f.loss is None else f"{f.loss:.4f}"
    pct = 100 * f.step / f.steps if f.steps else 0
    return (
        f"epoch {f.epoch + 1}/{f.epochs} step {f.step}/{f.steps} ({pct:.0f}%)  {rate}  loss {loss}  "
        f"lr {f.lr:.4g}  ETA epoch {format_duration(f.epoch_eta)}, run {format_duration(f.run_eta)}"
    )


def resolve_mode(mode: str, stream: TextIO) -> str:
    """`auto` as the stream makes it: the bar on a terminal, lines elsewhere."""
    if mode != "auto":
        return mode
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


class StepProgress:
    """The trainer's reporter: `start_epoch`, then `step` after every step, then `end_epoch`.

    `images_per_step`: the global batch (all processes). `every_seconds`: the line mode's interval.
    Only the main process makes one with a mode other than off.
    """

    def __init__(
        self,
        mode: str,
        epochs: int,
        images_per_step: int,
        every_seconds: float,
        stream: TextIO | None = None,
    ):
        self.stream = stream if stream is not None else sys.stderr
        self.mode = resolve_mode(mode, self.stream)
        self.epochs = epochs
        self.images_per_step = images_per_step
        self.every_seconds = every_seconds
        self.bar: tqdm | None = None
        self.loss: float | None = None

    def start_epoch(self, epoch: int, steps: int) -> None:
        self.epoch, self.steps = epoch, steps
        now = time.perf_counter()
        self.t0 = self.last_time = now
        self.last_step = 0
        if self.mode == "bar":
            self.bar = tqdm(
                total=steps,
                desc=f"epoch {epoch + 1}/{self.epochs}",
                unit="step",
                file=self.stream,
                dynamic_ncols=True,
                leave=False,
            )

    def figures(self, step: int, lr: float, now: float) -> StepFigures:
        """The figures at `step` of this epoch; img/s over the steps since the last report."""
        window = now - self.last_time
        rate = (step - self.last_step) * self.images_per_step / window if window > 0 and step > self.last_step else None
        elapsed = now - self.t0
        epoch_eta = eta_seconds(step, self.steps, elapsed)
        later = (self.epochs - self.epoch - 1) * self.steps
        run_eta = eta_seconds(step, self.steps + later, elapsed) if step else None
        return StepFigures(self.epoch, self.epochs, step, self.steps, rate, self.loss, lr, epoch_eta, run_eta)

    def step(self, step: int, lr: float, loss: float | None = None) -> None:
        """After step `step` (1-based) of the epoch; `loss` when the trainer read one back."""
        if self.mode == "off":
            return
        if loss is not None:
            self.loss = loss
        if self.mode == "bar":
            self.bar.update(step - self.bar.n)
            if loss is not None:
                f = self.figures(step, lr, time.perf_counter())
                self.bar.set_postfix_str(
                    f"{'?' if f.images_per_second is None else f'{f.images_per_second:,.0f}'} img/s, "
                    f"loss {loss:.4f}, lr {lr:.4g}, ETA run {format_duration(f.run_eta)}",
                    refresh=True,  # a log step: drawn now, whatever tqdm's own interval
                )
                self._mark(step)
            return
        now = time.perf_counter()
        if now - self.last_time >= self.every_seconds or step == self.steps:
            f = self.figures(step, lr, now)
            print(progress_line(f), file=self.stream, flush=True)
            self._mark(step)

    def _mark(self, step: int) -> None:
        """A report was made at `step`: the next one's img/s counts from here."""
        self.last_step, self.last_time = step, time.perf_counter()

    def end_epoch(self, summary: str) -> None:
        """Close the epoch's bar and say the epoch in one line (both modes)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.mode != "off":
            print(summary, file=self.stream, flush=True)
