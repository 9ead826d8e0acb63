"""Why a command failed, in a form a sweep can act on: an error kind, and whether a retry helps.

Every one-line error is a `UserError` whose `kind` names its cause (KINDS). When a command
(`ffcv-train`, `write-beton`) fails with one, `command_line.report_user_errors` records the kind
and the line in the JSON file that $FFCV_INAT_ERROR_RECORD names; `ffcv-sweep` sets it to the
row's error.json (the run dir of a training run) and reads it after a failed attempt. A
permanent kind is not retried: the same inputs and settings fail the same way. A failure that
leaves no record (killed, a node failure, a crash with a traceback) is retried as before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import UserError
from .atomic import DiskFull, Terminated, write_text_atomic

ERROR_RECORD_ENV = "FFCV_INAT_ERROR_RECORD"

# kind -> (permanent, what it means)
KINDS = {
    "input": (True, "a config error or bad input: recipe, options, a damaged or mismatched beton"),
    "diverged": (True, "the training loss became inf or nan"),
    DiskFull.kind: (True, "no room left on the disk or in the quota"),
    "out_of_memory": (True, "the GPU's memory is too small for these settings"),
    "machine": (False, "this machine lacks what the run needs (a CUDA GPU); another node may have it"),
    "terminated": (False, "stopped by a signal: scancel, preemption, a time limit"),
}


class Diverged(UserError):
    kind = "diverged"


class OutOfMemory(UserError):
    kind = "out_of_memory"


class MachineLacks(UserError):
    kind = "machine"


def is_permanent(kind: str | None) -> bool:
    """Whether a failure of this kind would fail again on a retry; unknown kinds can pass."""
    return KINDS.get(kind or "", (False, ""))[0]


def kind_of(exc: BaseException) -> str | None:
    """The error kind of an exception a command ended with; None for a crash (no kind)."""
    if isinstance(exc, UserError):
        return exc.kind
    if isinstance(exc, (Terminated, KeyboardInterrupt)):
        return "terminated"
    return None


def record_failure(exc: BaseException) -> None:
    """Write {kind, permanent, error} to $FFCV_INAT_ERROR_RECORD, if a sweep asked for it.

    The first cause wins: under torchrun, when one rank fails the others are stopped with
    SIGTERM, and their "terminated" must not replace its record. Best effort: a record that
    cannot be written (the disk is full after all) is a failure the sweep retries."""
    path, kind = os.environ.get(ERROR_RECORD_ENV), kind_of(exc)
    if not path or kind is None or (not is_permanent(kind) and Path(path).exists()):
        return
    record = {"kind": kind, "permanent": is_permanent(kind), "error": str(exc).splitlines()[0][:500]}
    try:
        write_text_atomic(path, json.dumps(record) + "\n")
    except (OSError, UserError):
        pass


def read_failure(path: str | Path) -> dict | None:
    """The record a failed command left at `path`, or None (none, or not a record)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
        return None
    return record


def out_of_memory_line(
    batch: tuple[str, int],
    res: tuple[str, int],
    world_size: int,
    precision: str,
    peak_mb: float | None,
    total_mb: float | None,
) -> str:
    """The one line for a step that ran out of GPU memory, with what to change: `batch` and
    `res` are (config key, value), e.g. ("data.batch_size", 256) and ("data.res", 224)."""
    (batch_key, batch_size), (res_key, res_value) = batch, res
    per_process = f" ({batch_size // world_size} per GPU)" if world_size > 1 else ""
    peak = "peak unknown" if peak_mb is None else f"peak {peak_mb:,.0f} MB"
    of = "" if total_mb is None else f" of {total_mb:,.0f} MB"
    return (
        f"out of GPU memory at {batch_key} {batch_size}{per_process}, {res_key} {res_value}, precision "
        f"{precision} ({peak}{of}): lower {batch_key} (e.g. --set {batch_key}={max(1, batch_size // 2)}) "
        f"or {res_key}"
    )
