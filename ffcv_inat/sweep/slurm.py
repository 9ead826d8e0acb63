"""Run a plan as SLURM jobs through submitit (`run_slurm`), or through submitit's local
executor (`run_submitit`, the same code path without SLURM).

Every missing run is one job, all submitted at once and chained with `afterok` dependencies;
the retries happen inside the job (`RowJob`, which calls executors.run_row). A job that SLURM
stops resumes from the run's last checkpoint: a preempted or requeued (`scontrol requeue`) job
restarts by itself; before the time limit submitit's signal (USR2) makes the job requeue
itself (`RowJob.checkpoint`); a job that ended anyway (time limit, node failure) is submitted
again by a waiting sweep. Nothing here needs SLURM's accounting (`sacct`): squeue while SLURM
knows a job, then the run dir and the job's own log (see state.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import click

from .. import UserError
from ..atomic import Terminated, interrupts_as_exceptions
from .plan import TRAIN_KINDS, PlanRow, topological_order
from .resources import PerKind, as_per_kind
from .state import (
    SLURM_IN_FLIGHT,
    SUBMITIT_DIR,
    failure_detail,
    is_complete,
    job_end_reason,
    job_logs,
    log_dir,
    plan_status,
    read_state,
    restore_state,
    squeue_states,
    write_state,
)
from .executors import (
    DEFAULT_ATTEMPTS,
    JobInfo,
    SweepResult,
    previous_attempts,
    procs_of,
    run_row,
    stop_on_first_sigterm,
    sweep_lock,
    trains_on_cpu,
)


# ------------------------------------------------------------------------------ the job


@dataclass
class RowJob:
    """What a submitit job runs: one plan row, with its retries, on the allocated node.

    Checkpointable in submitit's sense: when SLURM signals the approaching time limit (or a
    preemption) with USR2, submitit calls `checkpoint`, dumps the returned submission and
    requeues the job; it runs this same RowJob again, and the run resumes from its last
    checkpoint (training is always started with --resume). A SIGTERM (scancel, a requeue by
    SLURM, preemption) stops the run's process group and records the run as interrupted.
    """

    row: PlanRow
    attempts: int
    procs: int = 1
    cpu: bool = False

    def __call__(self) -> str:
        slurm = os.environ.get("SUBMITIT_EXECUTOR") == "slurm"
        job_id = os.environ.get("SLURM_JOB_ID") if slurm else os.environ.get("SUBMITIT_LOCAL_JOB_ID")
        job = (
            JobInfo(
                str(job_id),
                "slurm" if slurm else "submitit-local",
                int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) if slurm else 0,
            )
            if job_id
            else None
        )
        # submitit ignores SIGTERM (it waits for USR2); we stop the run when SLURM stops the job.
        previous = signal.signal(signal.SIGTERM, stop_on_first_sigterm())
        try:
            ok = run_row(self.row, self.attempts, self.procs, echo=print, job=job, cpu=self.cpu)
        except Terminated:
            print(
                f"{self.row.run_id}: stopped by SIGTERM (scancel, requeue or preemption); recorded as interrupted",
                flush=True,
            )
            raise SystemExit(143) from None  # no result file: the job did not finish
        finally:
            signal.signal(signal.SIGTERM, previous)
        if not ok:
            # Failing the job makes SLURM cancel the runs that depend on it (afterok).
            raise RuntimeError(f"{self.row.run_id} failed; see {log_dir(self.row)}")
        return self.row.run_id

    def checkpoint(self, *args, **kwargs):
        """submitit's hook on USR2 (time limit near, or preemption): requeue this same job;
        the run resumes from checkpoints/last.pt, losing at most the epoch in progress."""
        from submitit.helpers import DelayedSubmission

        print(
            f"{self.row.run_id}: SLURM signalled the end of this job's time; requeueing it "
            "(the run resumes from its last checkpoint)",
            flush=True,
        )
        return DelayedSubmission(self, *args, **kwargs)


# ------------------------------------------------------------------------------ SLURM options


# A job's time limit unless --timeout-min says otherwise: training 72 h, betons 12 h.
DEFAULT_TIMEOUT_MIN = PerKind(72 * 60, {"beton": 12 * 60})
# A job's CPUs unless --cpus-per-task says otherwise (loader workers, beton writers).
DEFAULT_CPUS_PER_TASK = 10


@dataclass(frozen=True)
class SlurmOptions:
    """What every job asks SLURM for. The resources are per kind of run (resources.PerKind; a
    plain number is the same for every kind)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gres: str | None = None  # a training job's GPU request instead of gpu:N, e.g. gpu:a100:8
    gpus_per_run: PerKind | int = 1  # 0: training on CPU, no GPU asked for
    procs_per_run: PerKind | int | None = None  # training processes per run (torchrun); default one per GPU
    cpus_per_task: PerKind | int = DEFAULT_CPUS_PER_TASK
    mem_gb: PerKind | int | None = None
    timeout_min: PerKind | int = DEFAULT_TIMEOUT_MIN
    max_parallel: int | None = None  # at most this many of the sweep's jobs at once (SLURM: lanes)
    sbatch: tuple[str, ...] = ()  # extra #SBATCH lines, e.g. --exclusive, --mail-type=END
    setup: tuple[str, ...] = ()  # shell lines run in the job before the run (module load, source ...)

    def __post_init__(self):
        for name in ("gpus_per_run", "procs_per_run", "cpus_per_task", "mem_gb", "timeout_min"):
            object.__setattr__(self, name, as_per_kind(getattr(self, name)))


def parse_sbatch_line(line: str) -> tuple[str, str | bool]:
    """'--mail-type=END' / '#SBATCH --exclusive' -> ('mail-type', 'END') / ('exclusive', True)."""
    text = line.strip()
    if text.startswith("#SBATCH"):
        text = text[len("#SBATCH") :].strip()
    if not text.startswith("--") or len(text) < 3 or " " in text.split("=", 1)[0]:
        raise UserError(f"--sbatch {line!r}: give one long sbatch option, e.g. --exclusive or --mail-type=END")
    key, eq, value = text[2:].partition("=")
    return key, (value if eq else True)


def gpus_of(row: PlanRow, opts: SlurmOptions) -> int:
    """GPUs a row's job asks for: none for data, betons and CPU training."""
    gpus = opts.gpus_per_run.of(row.kind)
    if row.kind not in TRAIN_KINDS or trains_on_cpu(row, gpus):
        return 0
    return gpus


def job_minutes(row: PlanRow, opts: SlurmOptions) -> int:
    return opts.timeout_min.of(row.kind)


def job_resources(row: PlanRow, opts: SlurmOptions) -> dict[str, str | bool]:
    """The sbatch options of a row's job (besides --time, its name, dependencies and logs),
    as `#SBATCH --key=value` lines: the one place that says what a job asks for."""
    res: dict[str, str | bool] = {}
    for key, value in (
        ("partition", opts.partition),
        ("account", opts.account),
        ("qos", opts.qos),
        ("constraint", opts.constraint),
    ):
        if value:
            res[key] = value
    res["cpus-per-task"] = str(opts.cpus_per_task.of(row.kind))
    if opts.mem_gb.of(row.kind):
        res["mem"] = f"{opts.mem_gb.of(row.kind)}G"
    gpus = gpus_of(row, opts)
    if gpus:
        res["gres"] = opts.gres or f"gpu:{gpus}"
    for line in opts.sbatch:
        key, value = parse_sbatch_line(line)
        res[key] = value
    return res


def _sbatch_flags(resources: dict[str, str | bool]) -> list[str]:
    return [f"--{k}" if v is True else f"--{k}={v}" for k, v in resources.items()]


# What an sbatch refusal is about -> the options that set it (first match wins).
SBATCH_ERROR_HINTS = (
    ("unable to contact", "that SLURM is up here: sbatch cannot reach slurmctld (SLURM_CONF?)"),
    ("s_p_parse_file", "SLURM's configuration here: SLURM_CONF or /etc/slurm/slurm.conf"),
    (
        "policy",
        "--slurm-qos / --slurm-account / --timeout-min / --max-parallel: the job breaks a limit of your account or QOS",
    ),
    ("gres", "--gpus-per-run / --gres: this partition has no such GPUs (--gpus-per-run 0 trains on CPU)"),
    ("generic resource", "--gpus-per-run / --gres: this partition has no such GPUs (--gpus-per-run 0 trains on CPU)"),
    ("unrecognized option", "--sbatch"),
    ("invalid option", "--sbatch"),
    (
        "node configuration is not available",
        "--cpus-per-task / --mem-gb / --gres / --slurm-constraint: no node of the partition has that much",
    ),
    ("account", "--slurm-account"),
    ("partition", "--slurm-partition"),
    ("qos", "--slurm-qos"),
    ("feature", "--slurm-constraint"),
    ("memory", "--mem-gb"),
    ("mem", "--mem-gb"),
    ("time", "--timeout-min"),
    ("dependency", "a dependency's job (SLURM forgot it? run ffcv-sweep run again)"),
)


def sbatch_refusal(row: PlanRow, stderr: str) -> str:
    """One line: which job sbatch refused, SLURM's own words, and the options behind it."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    said = next(
        (ln for ln in lines if "error" in ln.lower() or "failure" in ln.lower() or "unrecognized" in ln.lower()),
        lines[0] if lines else "no message",
    )
    low = said.lower()
    hint = next((h for key, h in SBATCH_ERROR_HINTS if key in low), "the --slurm-* / --sbatch options")
    kind = "training" if row.kind in TRAIN_KINDS else row.kind
    return f"sbatch refused the {kind} job of {row.run_id}: {said} (check {hint})"


def check_slurm_here() -> None:
    missing = [p for p in ("sbatch", "srun", "squeue", "scancel") if not shutil.which(p)]
    if missing:
        raise UserError(
            f"--executor slurm: {', '.join(missing)} not found here: run ffcv-sweep where SLURM's "
            "commands are (a login node of the cluster)"
        )


def preflight(rows: Sequence[PlanRow], opts: SlurmOptions) -> None:
    """`sbatch --test-only` once per kind of job (betons, CPU or GPU training) before anything
    is submitted: an option the cluster refuses is one line naming it, and no job is left
    behind."""
    shapes: dict[tuple, PlanRow] = {}
    for row in rows:
        shapes.setdefault((tuple(job_resources(row, opts).items()), job_minutes(row, opts)), row)
    for (resources, minutes), row in shapes.items():
        cmd = [
            "sbatch",
            "--test-only",
            f"--time={minutes}",
            "--job-name=ffcv-sweep-check",
            "--output=/dev/null",
            *_sbatch_flags(dict(resources)),
            "--wrap=true",
        ]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise UserError(f"sbatch --test-only did not answer: {e}") from None
        if r.returncode != 0:
            raise UserError(sbatch_refusal(row, r.stderr + r.stdout))


class SubmitError(Exception):
    """sbatch refused a job (its stderr is the message)."""


def _submit(cluster: str, row: PlanRow, opts: SlurmOptions, attempts: int, dependency: str | None = None, **state):
    """Submit one row through submitit: cluster "slurm", or "local" (submitit's LocalExecutor)."""
    import submitit

    # submitit's own files (pickles, the job's stdout/stderr) go in the row's log dir too.
    folder = log_dir(row) / SUBMITIT_DIR
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params: dict = dict(name=row.run_id, timeout_min=job_minutes(row, opts), nodes=1, tasks_per_node=1)
    if cluster == "slurm":
        extra = job_resources(row, opts)
        if dependency:
            # kill-on-invalid-dep: if a dependency fails its dependents are cancelled, not stuck.
            extra.update({"dependency": dependency, "kill-on-invalid-dep": "yes"})
        params["slurm_additional_parameters"] = extra
        if opts.setup:
            params["slurm_setup"] = list(opts.setup)
    else:
        params["cpus_per_task"] = opts.cpus_per_task.of(row.kind)
        if gpus_of(row, opts):
            params["gpus_per_node"] = gpus_of(row, opts)
    executor.update_parameters(**params)
    gpus = opts.gpus_per_run.of(row.kind)
    task = RowJob(row, attempts, procs_of(row, gpus, opts.procs_per_run.of(row.kind)), cpu=trains_on_cpu(row, gpus))
    try:
        # submitit prints sbatch's stderr before raising: we report it once, in one line.
        with contextlib.redirect_stderr(io.StringIO()):
            job = executor.submit(task)
    except Exception as e:  # submitit's FailedJobError carries sbatch's stderr
        raise SubmitError(str(e)) from None
    # The job may already have started and written its own state: never overwrite that.
    if read_state(row).get("job_id") != str(job.job_id):
        write_state(
            row,
            status="queued",
            attempt=previous_attempts(row),
            job_id=str(job.job_id),
            scheduler="slurm" if cluster == "slurm" else "submitit-local",
            **state,
        )
    return job


# ------------------------------------------------------------------------------ submitit local


def run_submitit(
    rows: Sequence[PlanRow],
    cluster: str = "slurm",
    opts: SlurmOptions = SlurmOptions(),
    attempts: int = DEFAULT_ATTEMPTS,
    wait: bool = True,
    max_parallel: int = 1,
    poll_seconds: float = 5.0,
    echo: Callable[[str], None] = click.echo,
) -> SweepResult:
    """One submitit job per missing run: on SLURM (`run_slurm`), or through submitit's local
    executor (cluster="local", no SLURM needed), which cannot express dependencies: there the
    jobs go in waves of runs whose dependencies are done, at most `max_parallel` at a time;
    everything else is the same code path (RowJob)."""
    if cluster == "slurm":
        return run_slurm(rows, opts, attempts, wait=wait, poll_seconds=poll_seconds, echo=echo)
    order = topological_order(rows)
    res = SweepResult([], [], [], [])
    if not order:
        return res
    with sweep_lock(order), interrupts_as_exceptions():
        statuses = {s.row.run_id: s for s in plan_status(order)}
        res.skipped = [rid for rid, s in statuses.items() if s.status == "done"]
        todo = [r for r in order if statuses[r.run_id].status != "done"]
        echo(
            f"{len(order)} runs: {len(res.skipped)} already done, 0 already submitted, "
            f"{len(todo)} to submit (submitit local executor)"
        )
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
            ready = [r for r in ready if r in pending][: max(1, max_parallel)]
            if not ready:
                if pending:
                    res.blocked += [r.run_id for r in pending]
                break
            wave = {}
            for row in ready:
                wave[row.run_id] = _submit(cluster, row, opts, attempts)
                echo(f"submitted {row.run_id}: job {wave[row.run_id].job_id}")
            failed_before = set(res.failed)
            try:
                _wait_local(wave, res, poll_seconds, echo)
            except BaseException:  # Ctrl-C / SIGTERM: local jobs would outlive us otherwise
                for job in wave.values():
                    job.cancel(check=False)
                raise
            bad |= set(res.failed) - failed_before
            pending = [r for r in pending if r.run_id not in wave]
    return res


def is_complete_id(run_id: str, rows: Sequence[PlanRow]) -> bool:
    return any(r.run_id == run_id and is_complete(r) for r in rows)


def _wait_local(jobs: dict, res: SweepResult, poll_seconds: float, echo: Callable[[str], None]) -> None:
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


# ------------------------------------------------------------------------------ SLURM

RETRY_ENDS = ("time limit", "preemption", "node fail")  # slurmstepd's "DUE TO ..." worth another job
RETRY_STATES = {"TIMEOUT", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL"}


def ended_early(slurm_state: str, reason: str) -> bool:
    """Whether SLURM ended a running job for a reason that is not the run's fault and not the
    user's (time limit, preemption without requeue, a lost node), so that the waiting sweep
    submits it again: squeue's final state while SLURM remembers the job, else the job log's
    "DUE TO ..." (no accounting needed). A plain scancel is the user's decision: not retried."""
    if slurm_state in RETRY_STATES or reason.startswith(RETRY_ENDS):
        return True
    # Requeued (preempted, scontrol requeue) and then failed to start again: SLURM's doing.
    return reason.startswith("job requeue") and slurm_state not in ("", "CANCELLED")


def run_slurm(
    rows: Sequence[PlanRow],
    opts: SlurmOptions = SlurmOptions(),
    attempts: int = DEFAULT_ATTEMPTS,
    wait: bool = True,
    poll_seconds: float = 30.0,
    echo: Callable[[str], None] = click.echo,
) -> SweepResult:
    """Submit every missing run as a SLURM job, chained with afterok; then (unless not `wait`)
    follow them with squeue until none is left, submitting again the runs whose job SLURM
    ended early (time limit, node failure), at most `attempts` times each.

    Runs already queued or running from an earlier sweep are followed, not submitted twice.
    A submission that sbatch refuses cancels the jobs this sweep had just submitted and is
    one UserError naming the option. Ctrl-C stops following; the jobs keep running.
    """
    order = topological_order(rows)
    if not order:
        return SweepResult([], [], [], [])
    check_slurm_here()
    with sweep_lock(order), interrupts_as_exceptions():
        sweep = _SlurmSweep(order, opts, attempts, echo)
        sweep.submit_ready()
        if not wait:
            if sweep.jobs:
                echo("not waiting: follow with ffcv-sweep status")
            return sweep.res
        try:
            while sweep.jobs:
                time.sleep(poll_seconds)
                sweep.poll()
                sweep.submit_ready()
        except BaseException:
            if sweep.jobs:
                echo(
                    f"stopped following {len(sweep.jobs)} SLURM jobs; they keep running "
                    "(ffcv-sweep status, or scancel them)"
                )
            raise
        return sweep.res


class _SlurmSweep:
    """What a SLURM sweep knows: the jobs in flight, and what became of the others."""

    def __init__(self, order: Sequence[PlanRow], opts: SlurmOptions, attempts: int, echo):
        self.order, self.opts, self.attempts, self.echo = list(order), opts, attempts, echo
        self.rows = {r.run_id: r for r in order}
        self.res = SweepResult([], [], [], [])
        self.jobs: dict[str, str] = {}  # run id -> SLURM job id, in flight
        self.done: set[str] = set()
        self.resubmits: Counter = Counter()
        self.seen_ended: set[str] = set()  # job ids squeue showed ended once (confirmed the next poll)
        self.retrying: set[str] = set()  # runs whose job SLURM ended early, to submit again
        self.lanes: list[str | None] = [None] * (opts.max_parallel or 0)  # last job of each lane
        self.warned_squeue = False
        statuses = plan_status(order)
        for s in statuses:
            rid = s.row.run_id
            if s.status == "done":
                self.done.add(rid)
                self.res.skipped.append(rid)
            elif s.status in ("queued", "running") and s.job_id:
                self.jobs[rid] = s.job_id
                lane = read_state(s.row).get("lane")
                if isinstance(lane, int) and lane < len(self.lanes):
                    tail = self.lanes[lane]
                    if tail is None or int(s.job_id) > int(tail):
                        self.lanes[lane] = s.job_id
        todo = len(order) - len(self.done) - len(self.jobs)
        echo(
            f"{len(order)} runs: {len(self.done)} already done, {len(self.jobs)} already submitted, "
            f"{todo} to submit (SLURM)"
        )

    @property
    def finished(self) -> set[str]:
        return self.done | set(self.res.failed) | set(self.res.blocked) | set(self.res.stopped)

    # ---------------------------------------------------------------- submitting

    def submit_ready(self) -> None:
        """Submit every run that is neither done, in flight nor given up, after its
        dependencies; runs that need a given-up one are blocked."""
        given_up = set(self.res.failed) | set(self.res.blocked) | set(self.res.stopped)
        todo: list[PlanRow] = []
        later: set[str] = set()
        for row in self.order:
            rid = row.run_id
            if rid in self.finished or rid in self.jobs:
                continue
            if any(d in later or self.jobs.get(d) in self.seen_ended for d in row.depends_on):
                later.add(rid)  # a dependency's job looks ended: the next poll tells how
                continue
            if is_complete(row):
                self.done.add(rid)
                continue
            coming = self.done | set(self.jobs) | {r.run_id for r in todo}
            bad = [d for d in row.depends_on if d in given_up or d not in coming]
            if bad:
                self.res.blocked.append(rid)
                given_up.add(rid)
                self.echo(f"{rid}: not submitted, needs {', '.join(bad)}")
                continue
            todo.append(row)
        if not todo:
            return
        preflight(todo, self.opts)
        submitted: list[tuple[str, str, dict]] = []
        for row in todo:
            previous = read_state(row)
            deps = [self.jobs[d] for d in row.depends_on if d in self.jobs]
            lane, lane_after = self._lane()
            parts = [f"afterok:{':'.join(deps)}"] if deps else []
            if lane_after:
                parts.append(f"afterany:{lane_after}")
            try:
                job = _submit(
                    "slurm",
                    row,
                    self.opts,
                    self.attempts,
                    ",".join(parts) or None,
                    **({"lane": lane} if lane is not None else {}),
                )
            except SubmitError as e:
                self._cancel(submitted)
                msg = sbatch_refusal(row, str(e))
                if submitted:
                    msg += (
                        f"; cancelled the {len(submitted)} jobs this sweep had just submitted "
                        f"({', '.join(j for _, j, _ in submitted)})"
                    )
                raise UserError(msg) from None
            job_id = str(job.job_id)
            submitted.append((row.run_id, job_id, previous))
            self.jobs[row.run_id] = job_id
            self.retrying.discard(row.run_id)
            if lane is not None:
                self.lanes[lane] = job_id
            self.echo(f"submitted {row.run_id}: job {job_id}" + (f" after {','.join(deps)}" if deps else ""))

    def _lane(self) -> tuple[int | None, str | None]:
        """With --max-parallel N the jobs form N chains (each waits for the one before it in
        its chain to end, `afterany`), so at most N run at once, as a job array's %N would:
        the lane whose last job is no longer in flight, else the one used longest ago."""
        if not self.lanes:
            return None, None
        in_flight = set(self.jobs.values())
        for i, tail in enumerate(self.lanes):
            if tail is None or tail not in in_flight:
                return i, None
        i = min(range(len(self.lanes)), key=lambda k: int(self.lanes[k]))
        return i, self.lanes[i]

    def _cancel(self, submitted: list[tuple[str, str, dict]]) -> None:
        if not submitted:
            return
        subprocess.run(["scancel", *[j for _, j, _ in submitted]], capture_output=True, timeout=120)
        for rid, _, previous in submitted:
            self.jobs.pop(rid, None)
            restore_state(self.rows[rid], previous)

    # ---------------------------------------------------------------- following

    def poll(self) -> None:
        queue = squeue_states(self.jobs.values())
        if queue is None:
            if not self.warned_squeue:
                self.echo("warning: squeue does not answer; following the runs by their run dirs until it does")
                self.warned_squeue = True
            queue = {}
            known = False
        else:
            known = True
        for rid, job in list(self.jobs.items()):
            row = self.rows[rid]
            in_flight = known and queue.get(job, "") in SLURM_IN_FLIGHT
            # Done once the job has recorded it (it writes its state right after the run's last file).
            if is_complete(row) and (read_state(row).get("status") == "done" or not in_flight):
                del self.jobs[rid]
                self.done.add(rid)
                self.res.ran.append(rid)
                self.echo(f"{rid}: done (job {job})")
                continue
            if not known or in_flight:
                self.seen_ended.discard(job)
                continue
            if job not in self.seen_ended:  # a requeue passes through ended-looking states: look twice
                self.seen_ended.add(job)
                continue
            del self.jobs[rid]
            self._ended(row, job, queue.get(job, ""))

    def _ended(self, row: PlanRow, job: str, slurm_state: str) -> None:
        """A job that left the queue without completing its run: failed, stopped, or worth
        another job."""
        rid = row.run_id
        st = read_state(row)
        status = st.get("status")
        err_log = job_logs(row, job)[1]
        if status == "failed" or (status == "done" and st.get("job_id") == job):
            self.res.ran.append(rid)
            self.res.failed.append(rid)
            self.echo(
                f"{rid}: FAILED (job {job}) after {st.get('attempt', '?')} attempts: {failure_detail(st)}; "
                f"logs: {log_dir(row)}, job log: {err_log}"
            )
            return
        if status == "queued" and st.get("job_id") == job:  # never started
            deps = row.depends_on
            if any(self.resubmits[d] for d in deps) and all(
                d in self.jobs or d in self.retrying or d in self.done for d in deps
            ):
                return  # SLURM cancelled it when a dependency's job ended early: submit it again after the new one
            if any(d in self.res.failed or d in self.res.blocked or d in self.res.stopped for d in deps):
                self.res.blocked.append(rid)
                self.echo(f"{rid}: cancelled by SLURM, a dependency failed (job {job})")
                return
            self.res.stopped.append(rid)
            self.echo(f"{rid}: job {job} was cancelled before it started; the next ffcv-sweep run submits it again")
            return
        reason = job_end_reason(row, job)
        said = reason or (slurm_state.lower() if slurm_state else "ended; SLURM no longer knows why (no accounting)")
        if ended_early(slurm_state, reason) and self.resubmits[rid] < self.attempts:
            self.resubmits[rid] += 1
            self.retrying.add(rid)
            self.echo(
                f"{rid}: job {job} stopped by SLURM ({said}); submitting it again "
                f"({self.resubmits[rid]}/{self.attempts}), it resumes from its last checkpoint"
            )
            return
        self.res.stopped.append(rid)
        self.echo(
            f"{rid}: job {job} stopped ({said}); the next ffcv-sweep run resumes it from its last checkpoint; "
            f"job log: {err_log}"
        )
