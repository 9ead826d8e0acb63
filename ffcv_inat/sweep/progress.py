"""How far a study is, for `ffcv-sweep status`: each running run's epoch, speed and ETA from its
log.jsonl, and the time the grid still needs, from the runs that finished.

A running run's ETA is its wall time per finished epoch (log.jsonl's `wall_seconds`: start-up,
training and evaluation, across resumes) times the epochs left. The grid's estimate is, per kind
of run, the mean wall time of that kind's finished runs times the runs of that kind still to
go (a running run counts with its own ETA); a kind with no finished run yet is priced as
`ffcv-bench cost --plan` prices it, from the measured throughput in the bench results file
(on one device), and the line says which figures are which; without results it is named, not
guessed. Both are sums, as if one run went at a time: with N jobs at once the grid can take
down to about 1/N of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from ..config import load_config
from ..rundir import CONFIG, read_log, read_summary
from ..training.progress import format_duration
from .plan import TRAIN_KINDS, PlanRow
from .state import RowStatus


@dataclass(frozen=True)
class RunProgress:
    epochs_done: int
    epochs: int
    images_per_second: float | None  # the last finished epoch's training speed
    eta_seconds: float | None  # None before the first epoch ends

    def describe(self) -> str:
        rate = "" if self.images_per_second is None else f", {self.images_per_second:,.0f} img/s"
        return f"epoch {self.epochs_done}/{self.epochs}{rate}, ETA {format_duration(self.eta_seconds)}"


def eta_from_log(log: Sequence[dict], epochs: int) -> float | None:
    """Seconds left: the wall time per finished epoch times the epochs left (None without any)."""
    if not log or log[-1].get("wall_seconds") is None:
        return None
    done = len(log)
    return max(0, epochs - done) * float(log[-1]["wall_seconds"]) / done


def planned_epochs(row: PlanRow) -> int:
    """The run's epochs: its run dir's config.yaml once written, else its recipe and --set items."""
    stored = Path(row.outputs) / CONFIG
    if stored.is_file():
        epochs = ((yaml.safe_load(stored.read_text()) or {}).get("schedule") or {}).get("epochs")
        if isinstance(epochs, int):
            return epochs
    return load_config(row.recipe, list(row.overrides)).schedule.epochs


def run_progress(row: PlanRow) -> RunProgress:
    """A training run's progress from its run dir."""
    log = read_log(row.outputs)
    epochs = planned_epochs(row)
    rate = log[-1].get("train_images_per_second") if log else None
    return RunProgress(len(log), epochs, rate, eta_from_log(log, epochs))


@dataclass(frozen=True)
class GridEstimate:
    runs_left: int
    seconds: float  # of the runs it could estimate
    measured_kinds: dict[str, float]  # kind -> mean wall seconds of its finished runs
    unmeasured: dict[str, int]  # kind -> runs left of a kind with no finished run yet
    predicted: dict[str, float] = field(default_factory=dict)  # kind -> seconds ffcv-bench cost predicts
    prediction_source: str = ""  # what priced them, or why nothing could

    def describe(self) -> str:
        if not self.runs_left:
            return "grid: every training run is done"
        basis = ", ".join(f"{k} {format_duration(s)}" for k, s in self.measured_kinds.items())
        parts = [f"from finished runs' mean wall time ({basis})"] if self.measured_kinds else []
        if self.predicted:
            said = ", ".join(f"{k} {format_duration(s)}" for k, s in self.predicted.items())
            parts.append(
                f"predicted by ffcv-bench cost for kinds with none finished ({said}; {self.prediction_source})"
            )
        line = f"grid: {self.runs_left} training runs left"
        if parts:
            line += f"; ≈ {format_duration(self.seconds)} one at a time, " + "; ".join(parts)
        if self.unmeasured:
            left = ", ".join(f"{n} {k}" for k, n in self.unmeasured.items())
            line += f"; not counted, no {'/'.join(self.unmeasured)} run finished yet: {left}"
            line += f" ({self.prediction_source})" if self.prediction_source else ""
        return line


def predicted_seconds(rows: Sequence[PlanRow], results: Path | None = None) -> tuple[dict[str, float], str]:
    """({run id: seconds} of every training row as `ffcv-bench cost --plan` prices it, what priced
    them), or ({}, why not) where the bench results cannot price this plan."""
    from .. import UserError
    from ..bench.cost.study import study_costs
    from ..bench.results import default_results, read_results

    path = results or default_results()
    try:
        costs, why = study_costs(rows, read_results(path), None)
    except UserError as e:
        return {}, f"no prediction: {e}"
    return {c.run_id: c.hours * 3600 for c in costs}, f"priced on {why}"


def grid_estimate(
    statuses: Sequence[RowStatus], running: dict[str, RunProgress], predict: bool = True, results: Path | None = None
) -> GridEstimate:
    """What the training runs still to finish need, by kind (see the module's docstring);
    `predict`: price kinds with no finished run from the bench results (`results`, default
    ffcv-bench's)."""
    walls: dict[str, list[float]] = {}
    for s in statuses:
        if s.row.kind in TRAIN_KINDS and s.status == "done":
            summary = read_summary(s.row.outputs) or {}
            if summary.get("wall_seconds") is not None:
                walls.setdefault(s.row.kind, []).append(float(summary["wall_seconds"]))
    measured = {k: sum(v) / len(v) for k, v in walls.items()}
    seconds, left, unmeasured = 0.0, 0, {}
    for s in statuses:
        if s.row.kind not in TRAIN_KINDS or s.status == "done":
            continue
        left += 1
        progress = running.get(s.row.run_id)
        if progress is not None and progress.eta_seconds is not None:
            seconds += progress.eta_seconds
        elif s.row.kind in measured:
            seconds += measured[s.row.kind]
        else:
            unmeasured[s.row.kind] = unmeasured.get(s.row.kind, 0) + 1
    if not (unmeasured and predict):
        return GridEstimate(left, seconds, measured, unmeasured)
    priced, source = predicted_seconds([s.row for s in statuses], results)
    if not priced:
        return GridEstimate(left, seconds, measured, unmeasured, prediction_source=source)
    predicted: dict[str, float] = {}
    for s in statuses:  # the rows counted as unmeasured above: not done, no ETA of their own
        if s.row.kind in unmeasured and s.status != "done":
            eta = running.get(s.row.run_id)
            if eta is None or eta.eta_seconds is None:
                predicted[s.row.kind] = predicted.get(s.row.kind, 0.0) + priced.get(s.row.run_id, 0.0)
    return GridEstimate(left, seconds + sum(predicted.values()), measured, {}, predicted, source)
