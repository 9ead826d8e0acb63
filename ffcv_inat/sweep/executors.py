"""Run a plan: one run at a time here (`local`), or one SLURM job per run through submitit.

Every run is a real subprocess of `ffcv-train` / `write-beton` (through torchrun when a run
gets more than one GPU) with stdout/stderr appended to stdout.log/stderr.log in its log dir
(the run dir for training runs). Each attempt is recorded in sweep_state.json; a training run
that failed after writing a checkpoint is retried with --resume, so a retry loses at most
the epoch in progress. Runs whose outputs are complete are never started again.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import click

from .. import UserError
from ..atomic import interrupts_as_exceptions
from .plan import TRAIN_KINDS, PlanRow, topological_order
from .state import is_complete, log_dir, row_status, work_dir_of, write_state

DEFAULT_ATTEMPTS = 3  # first try + 2 retries: enough for a flaky node, not a broken config


def executable(name: str) -> str:
    """A console script of this environment (the venv of the running ffcv-sweep)."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    import shutil

    found = shutil.which(name)
    if not found:
        raise UserError(f"{name} not found next to {sys.executable} or on PATH (is ffcv-inat installed?)")
    return found


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def row_command(row: PlanRow, gpus_per_run: int = 1) -> list[str]:
    """The argv that makes the row's outputs."""
    if row.kind == "data":
        cmd = [sys.executable, "-m", "ffcv_inat.sweep.synthetic_data", row.outputs]
        for key, value in sorted(row.options.items()):
            cmd += [_flag(key), str(value)]
        return cmd
    if row.kind == "beton":
        cmd = [executable("write-beton"), "--out", row.outputs, "--overwrite"]
        if row.inputs.get("data_dir"):
            cmd += ["--data-dir", row.inputs["data_dir"]]
        for key, value in sorted(row.options.items()):
            cmd += [_flag(key), str(value)]
        return cmd
    args = ["--recipe", row.recipe, "--out", row.outputs]
    for role in ("train", "val", "init"):
        if role in row.inputs:
            args += [f"--{role}", row.inputs[role]]
    for item in row.overrides:
        args += ["--set", item]
    # Always --resume: the run dir already holds this sweep's logs (ffcv-train refuses a
    # non-empty dir without it), and a retry continues from the last checkpoint if an
    # earlier attempt wrote one (with no checkpoint the run starts from scratch).
    args.append("--resume")
    if gpus_per_run > 1:
        return [executable("torchrun"), "--standalone", f"--nproc_per_node={gpus_per_run}", "--no-python",
                executable("ffcv-train"), *args]
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


def run_row(row: PlanRow, attempts: int = DEFAULT_ATTEMPTS, gpus_per_run: int = 1,
            echo: Callable[[str], None] = lambda s: None, job_id: str | None = None) -> bool:
    """Run one row until its outputs are complete, at most `attempts` times; True when done."""
    logs = log_dir(row)
    logs.mkdir(parents=True, exist_ok=True)
    Path(row.outputs).parent.mkdir(parents=True, exist_ok=True)  # write-beton wants its folder to exist
    first = int(_previous_attempts(row)) + 1
    for attempt in range(first, first + attempts):
        cmd = row_command(row, gpus_per_run)
        extra = {"job_id": job_id} if job_id else {}
        if row.kind in TRAIN_KINDS:
            extra["gpus"] = gpus_per_run  # for GPU-hours in ffcv-analyze
        start = time.time()
        with (logs / "stdout.log").open("a") as out, (logs / "stderr.log").open("a") as err:
            header = f"\n=== ffcv-sweep attempt {attempt}, {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n"
            out.write(header)
            err.write(header)
            out.flush()
            err.flush()
            # Own session: Ctrl-C reaches the sweep, which stops the run's whole process group.
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
            write_state(row, status="running", attempt=attempt, pid=proc.pid, command=cmd, **extra)
            try:
                rc = proc.wait()
            except BaseException:
                _stop(proc)
                write_state(row, status="interrupted", attempt=attempt, **extra)
                raise
        seconds = time.time() - start
        if rc == 0 and is_complete(row):
            write_state(row, status="done", attempt=attempt, seconds=round(seconds, 1), **extra)
            return True
        error = _last_line(logs / "stderr.log") or f"exit code {rc}"
        if rc == 0:
            error = f"exited 0 but its outputs are incomplete ({row.outputs})"
        write_state(row, status="failed", attempt=attempt, returncode=rc, error=error, **extra)
        echo(f"  attempt {attempt} failed (exit {rc}): {error}")
    return False


def _previous_attempts(row: PlanRow) -> int:
    """Attempts already made by earlier sweeps, so numbering continues across restarts (each
    `ffcv-sweep run` gives a missing run up to `attempts` more tries; an interrupted attempt
    is not counted as one)."""
    from .state import read_state

    st = read_state(row)
    n = int(st.get("attempt", 0) or 0)
    return n if st.get("status") == "failed" else max(0, n - 1)


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

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


def run_local(rows: Sequence[PlanRow], attempts: int = DEFAULT_ATTEMPTS, gpus_per_run: int = 1,
              echo: Callable[[str], None] = click.echo) -> SweepResult:
    """Run the plan here, one run at a time, in dependency order."""
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
            start = time.time()
            ok = run_row(row, attempts, gpus_per_run if row.kind in TRAIN_KINDS else 1, echo=echo)
            res.ran.append(row.run_id)
            if ok:
                echo(f"[{n}/{len(todo)}] {row.run_id}: done in {time.time() - start:.1f}s")
            else:
                bad.add(row.run_id)
                res.failed.append(row.run_id)
                echo(f"[{n}/{len(todo)}] {row.run_id}: FAILED after {attempts} attempts; logs in {log_dir(row)}")
    return res


# ------------------------------------------------------------------------------ SLURM (submitit)

@dataclass
class RowJob:
    """What a submitit job runs: one plan row, with its retries, on the allocated node."""

    row: PlanRow
    attempts: int
    gpus_per_run: int

    def __call__(self) -> str:
        job_id = os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")
        if not run_row(self.row, self.attempts, self.gpus_per_run, echo=print, job_id=job_id):
            # Failing the job makes SLURM cancel the runs that depend on it (afterok).
            raise RuntimeError(f"{self.row.run_id} failed after {self.attempts} attempts; see {log_dir(self.row)}")
        return self.row.run_id


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_run: int = 1
    cpus_per_task: int = 10
    mem_gb: int | None = None
    timeout_min: int = 72 * 60
    beton_timeout_min: int = 12 * 60
    constraint: str | None = None


def _make_executor(cluster: str, folder: Path, row: PlanRow, opts: SlurmOptions, dependency_ids: Sequence[str]):
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    gpus = opts.gpus_per_run if row.kind in TRAIN_KINDS else 0
    timeout = opts.timeout_min if row.kind in TRAIN_KINDS else opts.beton_timeout_min
    params = dict(name=row.run_id, timeout_min=timeout, nodes=1, tasks_per_node=1,
                  cpus_per_task=opts.cpus_per_task)
    if gpus:
        params["gpus_per_node"] = gpus
    if cluster == "slurm":
        extra = {}
        if dependency_ids:
            # kill-on-invalid-dep: if a dependency fails its dependents are cancelled, not stuck.
            extra = {"dependency": "afterok:" + ":".join(dependency_ids), "kill-on-invalid-dep": "yes"}
        if opts.account:
            extra["account"] = opts.account
        if opts.qos:
            extra["qos"] = opts.qos
        params.update(slurm_partition=opts.partition, slurm_additional_parameters=extra)
        if opts.mem_gb:
            params["mem_gb"] = opts.mem_gb
        if opts.constraint:
            params["slurm_constraint"] = opts.constraint
        params = {k: v for k, v in params.items() if v is not None}
    executor.update_parameters(**params)
    return executor


def run_submitit(rows: Sequence[PlanRow], cluster: str = "slurm", opts: SlurmOptions = SlurmOptions(),
                 attempts: int = DEFAULT_ATTEMPTS, wait: bool = True, max_parallel: int = 1,
                 poll_seconds: float = 5.0, echo: Callable[[str], None] = click.echo) -> SweepResult:
    """One submitit job per missing run.

    On SLURM every job is submitted at once, chained with afterok dependencies, and SLURM
    orders them. submitit's local executor (cluster="local", no SLURM needed) cannot express
    dependencies, so there the jobs are submitted in waves of runs whose dependencies are
    done, at most `max_parallel` at a time; everything else is the same code path.
    """
    order = topological_order(rows)
    res = SweepResult([], [], [], [])
    if not order:
        return res
    with sweep_lock(order), interrupts_as_exceptions():
        statuses = {r.run_id: row_status(r) for r in order}
        res.skipped = [rid for rid, s in statuses.items() if s.status == "done"]
        in_flight = {rid: s.detail.split()[-1] for rid, s in statuses.items()
                     if s.status in ("queued", "running") and s.detail.startswith("job")}
        todo = [r for r in order if statuses[r.run_id].status not in ("done",) and r.run_id not in in_flight]
        echo(f"{len(order)} runs: {len(res.skipped)} already done, {len(in_flight)} already submitted, "
             f"{len(todo)} to submit ({'SLURM' if cluster == 'slurm' else 'submitit local executor'})")
        jobs: dict[str, object] = {}
        if cluster == "slurm":
            job_ids = dict(in_flight)
            for row in todo:
                deps = [job_ids[d] for d in row.depends_on if d in job_ids]
                job = _submit(cluster, row, opts, attempts, deps)
                jobs[row.run_id] = job
                job_ids[row.run_id] = str(job.job_id)
                echo(f"submitted {row.run_id}: job {job.job_id}" + (f" after {','.join(deps)}" if deps else ""))
            if not wait:
                echo("not waiting: follow with ffcv-sweep status")
                return res
            _wait(jobs, res, poll_seconds, echo)
        else:
            pending = list(todo)
            bad: set[str] = set()
            while pending:
                ready = [r for r in pending if all(is_complete_id(d, order) for d in r.depends_on)]
                blocked = [r for r in pending if any(d in bad for d in r.depends_on)]
                for r in blocked:
                    bad.add(r.run_id)
                    res.blocked.append(r.run_id)
                    echo(f"{r.run_id}: skipped, a dependency failed")
                pending = [r for r in pending if r not in blocked]
                ready = [r for r in ready if r in pending][:max(1, max_parallel)]
                if not ready:
                    if pending:
                        res.blocked += [r.run_id for r in pending]
                    break
                wave = {}
                for row in ready:
                    wave[row.run_id] = _submit(cluster, row, opts, attempts, [])
                    echo(f"submitted {row.run_id}: job {wave[row.run_id].job_id}")
                failed_before = set(res.failed)
                try:
                    _wait(wave, res, poll_seconds, echo)
                except BaseException:  # Ctrl-C / SIGTERM: local jobs would outlive us otherwise
                    for job in wave.values():
                        job.cancel(check=False)
                    raise
                bad |= set(res.failed) - failed_before
                pending = [r for r in pending if r.run_id not in wave]
    return res


def is_complete_id(run_id: str, rows: Sequence[PlanRow]) -> bool:
    return any(r.run_id == run_id and is_complete(r) for r in rows)


def _submit(cluster: str, row: PlanRow, opts: SlurmOptions, attempts: int, dependency_ids: Sequence[str]):
    # submitit's own files (pickles, its stdout/stderr) go in the row's log dir too.
    folder = log_dir(row) / "submitit"
    executor = _make_executor(cluster, folder, row, opts, dependency_ids)
    gpus = opts.gpus_per_run if row.kind in TRAIN_KINDS else 1
    job = executor.submit(RowJob(row, attempts, gpus))
    from .state import read_state

    # The job may already have started and written its own state: never overwrite that.
    if read_state(row).get("job_id") != str(job.job_id):
        write_state(row, status="queued", attempt=0, job_id=str(job.job_id))
    return job


def _wait(jobs: dict, res: SweepResult, poll_seconds: float, echo: Callable[[str], None]) -> None:
    remaining = dict(jobs)
    while remaining:
        for rid, job in list(remaining.items()):
            if not job.done():
                continue
            del remaining[rid]
            res.ran.append(rid)
            try:
                job.result()
                echo(f"{rid}: done (job {job.job_id})")
            except Exception as e:  # submitit re-raises the job's error, or says it was cancelled
                res.failed.append(rid)
                msg = str(e).strip().splitlines()
                echo(f"{rid}: FAILED (job {job.job_id}): {msg[-1] if msg else type(e).__name__}")
        if remaining:
            time.sleep(poll_seconds)
