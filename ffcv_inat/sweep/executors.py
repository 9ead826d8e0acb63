"""Run a plan one run at a time here (`local`): the runs, their retries, their state.

Every run is a real subprocess of `ffcv-train` / `write-beton` (through torchrun when a run
has more than one process) with stdout/stderr appended to stdout.log/stderr.log in its log dir
(the run dir for training runs). Each attempt is recorded in sweep_state.json; a training run
that failed after writing a checkpoint is retried with --resume, so a retry loses at most
the epoch in progress. A failure the run recorded as permanent (error.json: a config error, a
damaged beton, a diverged loss, a full disk, out of GPU memory; ffcv_inat.failures) is not
retried; one that left no record or can pass (killed, a node failure, preemption) is. Runs
whose outputs are complete are never started again. The SLURM executor (slurm.py) runs the
same `run_row` inside each job.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import click

from .. import UserError
from ..atomic import Terminated, interrupts_as_exceptions
from ..failures import ERROR_RECORD_ENV, KINDS, is_permanent, read_failure
from .plan import TRAIN_KINDS, PlanRow, topological_order
from .resources import PerKind, as_per_kind
from .state import ERROR_RECORD, is_complete, log_dir, read_state, work_dir_of, write_state

DEFAULT_ATTEMPTS = 3  # first try + 2 retries: enough for a flaky node, not a broken config


def executable(name: str) -> str:
    """A console script of this environment (the venv of the running ffcv-sweep)."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise UserError(f"{name} not found next to {sys.executable} or on PATH (is ffcv-inat installed?)")
    return found


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def row_device(row: PlanRow) -> str | None:
    """The `device=` a training row's own --set items give (the last one wins), if any."""
    found = None
    for item in row.overrides:
        key, _, value = item.partition("=")
        if key.strip() == "device":
            found = value.strip()
    return found


def trains_on_cpu(row: PlanRow, gpus_per_run: int) -> bool:
    """A training row that needs no GPU: its plan says device=cpu (the smoke grid), or the
    sweep gives runs no GPU (--gpus-per-run 0)."""
    return row.kind in TRAIN_KINDS and (gpus_per_run == 0 or row_device(row) == "cpu")


def procs_of(row: PlanRow, gpus_per_run: int, procs_per_run: int | None = None) -> int:
    """Processes of a run: 1 for betons; for training --procs-per-run, else one per GPU."""
    if row.kind not in TRAIN_KINDS:
        return 1
    return procs_per_run or max(1, gpus_per_run)


def row_command(row: PlanRow, procs: int = 1, cpu: bool = False) -> list[str]:
    """The argv that makes the row's outputs: `procs` training processes (torchrun when more
    than one); `cpu` (no GPU for it) adds --set device=cpu unless its plan says so already."""
    if row.kind == "data":
        cmd = [sys.executable, "-m", "ffcv_inat.sweep.synthetic_data", row.outputs]
        for key, value in sorted(row.options.items()):
            cmd += [_flag(key), str(value)]
        return cmd
    if row.kind == "beton":
        cmd = [executable("write-beton"), "--out", row.outputs, "--overwrite"]
        if row.inputs.get("data_dir"):
            cmd += ["--data-dir", row.inputs["data_dir"]]
        if row.inputs.get("parent"):  # a view of the beton the row depends on
            cmd += ["--from", row.inputs["parent"]]
        for key, value in sorted(row.options.items()):
            cmd += [_flag(key), str(value)]
        return cmd
    args = ["--recipe", row.recipe, "--out", row.outputs]
    for role in ("train", "val", "init"):
        if role in row.inputs:
            args += [f"--{role}", row.inputs[role]]
    for item in row.overrides:
        args += ["--set", item]
    if cpu and row_device(row) != "cpu":
        args += ["--set", "device=cpu"]
    # Always --resume: the run dir already holds this sweep's logs (ffcv-train refuses a
    # non-empty dir without it), and a retry continues from the last checkpoint if an
    # earlier attempt wrote one (with no checkpoint the run starts from scratch).
    args.append("--resume")
    if procs > 1:
        return [
            executable("torchrun"),
            "--standalone",
            f"--nproc_per_node={procs}",
            "--no-python",
            executable("ffcv-train"),
            *args,
        ]
    return [executable("ffcv-train"), *args]


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the run's process group (the trainer and its loader workers), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass(frozen=True)
class JobInfo:
    """The scheduler's job a run_row call runs in, recorded in sweep_state.json."""

    job_id: str
    scheduler: str  # slurm | submitit-local
    restarts: int = 0  # SLURM_RESTART_COUNT: how often SLURM requeued the job


def run_row(
    row: PlanRow,
    attempts: int = DEFAULT_ATTEMPTS,
    procs: int = 1,
    echo: Callable[[str], None] = lambda s: None,
    job: JobInfo | None = None,
    cpu: bool = False,
) -> bool:
    """Run one row until its outputs are complete, at most `attempts` times; True when done.

    An attempt whose run recorded a permanent failure (failures.KINDS) is not tried again: the
    same inputs and settings would fail the same way.
    """
    logs = log_dir(row)
    logs.mkdir(parents=True, exist_ok=True)
    Path(row.outputs).parent.mkdir(parents=True, exist_ok=True)  # write-beton wants its folder to exist
    first = previous_attempts(row) + 1
    extra = _state_extra(row, procs, job)
    record = logs / ERROR_RECORD
    env = {**os.environ, ERROR_RECORD_ENV: str(record.resolve())}
    for attempt in range(first, first + attempts):
        cmd = row_command(row, procs, cpu)
        record.unlink(missing_ok=True)  # an earlier attempt's
        start = time.time()
        with (logs / "stdout.log").open("a") as out, (logs / "stderr.log").open("a") as err:
            header = f"\n=== ffcv-sweep attempt {attempt}, {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n"
            out.write(header)
            err.write(header)
            out.flush()
            err.flush()
            # Own session: Ctrl-C reaches the sweep, which stops the run's whole process group.
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True, env=env
            )
            write_state(row, status="running", attempt=attempt, pid=proc.pid, command=cmd, **extra)
            try:
                rc = proc.wait()
                if rc < 0 and job is not None and job.scheduler == "slurm":
                    # Killed by a signal: when SLURM is stopping the job (scancel, requeue, time
                    # limit) its signal to this process lands a moment later; wait for it rather
                    # than count an attempt the run did not fail.
                    time.sleep(2)
            except BaseException:
                _STOPPING.append(True)
                _stop(proc)
                write_state(row, status="interrupted", attempt=attempt, **extra)
                raise
        seconds = time.time() - start
        if rc == 0 and is_complete(row):
            write_state(row, status="done", attempt=attempt, seconds=round(seconds, 1), **extra)
            return True
        if _record_failure(row, attempt, rc, logs, echo, extra):
            break
    return False


def _state_extra(row: PlanRow, procs: int, job: JobInfo | None) -> dict:
    """The fields every state.json write of this row's attempts carries: the job, its requeues, the procs."""
    extra: dict = {}
    if job is not None:
        extra.update(job_id=job.job_id, scheduler=job.scheduler)
        if job.restarts:
            extra["restarts"] = job.restarts
    if row.kind in TRAIN_KINDS:
        extra["procs"] = procs
    return extra


def _record_failure(row: PlanRow, attempt: int, rc: int, logs: Path, echo: Callable[[str], None], extra: dict) -> bool:
    """Write and echo a failed attempt (its error from the error record in `logs`, else stderr's last line);
    True when the failure is permanent, so not worth another attempt."""
    failure = read_failure(logs / ERROR_RECORD) if rc != 0 else None
    error = (failure or {}).get("error") or _last_line(logs / "stderr.log") or f"exit code {rc}"
    if rc == 0:
        error = f"exited 0 but its outputs are incomplete ({row.outputs})"
    kind = failure["kind"] if failure else None
    permanent = is_permanent(kind)
    write_state(
        row,
        status="failed",
        attempt=attempt,
        returncode=rc,
        error=error,
        **({"error_kind": kind, "permanent": permanent} if kind else {}),
        **extra,
    )
    echo(f"  attempt {attempt} failed (exit {rc}): {error}")
    if permanent:
        echo(f"  {kind} ({KINDS[kind][1]}): a retry would fail the same way, not tried again")
    return permanent


_STOPPING: list[bool] = []  # set once run_row is stopping its run (RowJob ignores further SIGTERMs)


def stop_on_first_sigterm():
    """A SIGTERM handler for a SLURM job (slurm.RowJob): the first SIGTERM raises Terminated,
    which stops the run; later ones (the same kill, repeated) are ignored while it stops."""
    _STOPPING.clear()

    def handler(signum, frame):
        if _STOPPING:
            return
        _STOPPING.append(True)
        raise Terminated(f"terminated by signal {signum}")

    return handler


def previous_attempts(row: PlanRow) -> int:
    """Attempts already made by earlier sweeps, so numbering continues across restarts (each
    `ffcv-sweep run` gives a missing run up to `attempts` more tries; an interrupted attempt
    is not counted as one)."""
    st = read_state(row)
    n = int(st.get("attempt", 0) or 0)
    return n if st.get("status") in ("failed", "queued") else max(0, n - 1)


@contextlib.contextmanager
def sweep_lock(rows: Sequence[PlanRow]) -> Iterator[None]:
    """One `ffcv-sweep run` per work dir at a time: two would start the same runs twice."""
    work = work_dir_of(rows[0])
    work.mkdir(parents=True, exist_ok=True)
    with (work / ".sweep.lock").open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another ffcv-sweep run is using {work}; wait for it or stop it") from None
        yield


@dataclass
class SweepResult:
    ran: list[str]  # run ids started (and finished) by this sweep, in order
    skipped: list[str]  # already complete
    failed: list[str]  # still failing after their attempts
    blocked: list[str]  # not started because a dependency failed
    stopped: list[str] = field(default_factory=list)  # SLURM jobs cancelled from outside (scancel)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked and not self.stopped


def run_local(
    rows: Sequence[PlanRow],
    attempts: int = DEFAULT_ATTEMPTS,
    gpus_per_run: PerKind | int = 1,
    echo: Callable[[str], None] = click.echo,
    procs_per_run: PerKind | int | None = None,
) -> SweepResult:
    """Run the plan here, one run at a time, in dependency order; GPUs and processes per kind
    of run (resources.PerKind, or one number for all)."""
    gpus_per_run, procs_per_run = as_per_kind(gpus_per_run), as_per_kind(procs_per_run)
    if not rows:
        return SweepResult([], [], [], [])
    order = topological_order(rows)
    res = SweepResult([], [], [], [])
    # SIGTERM (kill, `timeout`, a batch system) stops the current run like Ctrl-C does, rather
    # than orphaning it: the run's process group is stopped and it is marked interrupted.
    with sweep_lock(order), interrupts_as_exceptions():
        todo = [r for r in order if not is_complete(r)]
        res.skipped = [r.run_id for r in order if r not in todo]
        echo(f"{len(order)} runs: {len(res.skipped)} already done, {len(todo)} to run")
        bad: set[str] = set()
        for n, row in enumerate(todo, start=1):
            missing = [d for d in row.depends_on if d in bad]
            if missing:
                bad.add(row.run_id)
                res.blocked.append(row.run_id)
                echo(f"[{n}/{len(todo)}] {row.run_id}: skipped, needs {', '.join(missing)}")
                continue
            echo(f"[{n}/{len(todo)}] {row.run_id} ...")
            start, first = time.time(), previous_attempts(row) + 1
            ok = run_row(
                row,
                attempts,
                procs_of(row, gpus_per_run.of(row.kind), procs_per_run.of(row.kind)),
                echo=echo,
                cpu=trains_on_cpu(row, gpus_per_run.of(row.kind)),
            )
            res.ran.append(row.run_id)
            if ok:
                echo(f"[{n}/{len(todo)}] {row.run_id}: done in {time.time() - start:.1f}s")
            else:
                bad.add(row.run_id)
                res.failed.append(row.run_id)
                made = int(read_state(row).get("attempt", first)) - first + 1
                echo(f"[{n}/{len(todo)}] {row.run_id}: FAILED after {made} attempts; logs in {log_dir(row)}")
    return res


def betons_to_verify(rows: Sequence[PlanRow]) -> list[str]:
    """The betons that the runs still to do read and that this sweep does not write itself:
    inputs that already exist (their beton rows are complete, or not in the plan). Missing
    ones are listed too, so that verifying them names them."""
    written = {r.outputs for r in rows if r.kind == "beton" and not is_complete(r)}
    out: list[str] = []
    for r in rows:
        if r.kind not in TRAIN_KINDS or is_complete(r):
            continue
        for role in ("train", "val"):
            path = r.inputs.get(role)
            if path and path not in written and path not in out:
                out.append(path)
    return out
