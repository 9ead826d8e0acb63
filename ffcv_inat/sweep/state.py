"""Where each run of a plan stands, read from the files it leaves (no database to go stale),
and, for SLURM jobs, from `squeue` (one call for the whole plan).

done     its outputs are complete: a complete summary.json (training, read by rundir.read_summary,
         as ffcv-analyze reads it), beton + manifest, data dir
running  a sweep_state.json says running and its process (this host) or SLURM job is alive
queued   submitted to SLURM and not started (or requeued: preempted, out of time)
failed   the last attempt failed (sweep_state.json keeps the return code and the error line, and
         for a failure the run recorded, its kind and whether a retry could help: `permanent`)
pending  none of the above, including runs whose sweep or SLURM job was stopped ("interrupted":
         the next `ffcv-sweep run` resumes them from their last checkpoint)

SLURM without accounting (no `sacct`, as on many small clusters) forgets a job a few minutes
after it ends (MinJobAge). Nothing here needs more than that: the run dir says whether the run
finished or failed, the job's own log says why SLURM stopped it (`slurmstepd`'s "*** JOB n
CANCELLED ... DUE TO TIME LIMIT ***" line), and where neither can tell, the detail says so.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..atomic import pid_alive, write_text_atomic
from ..beton import manifest_path
from ..rundir import read_summary
from .plan import TRAIN_KINDS, PlanRow

STATUSES = ("done", "running", "queued", "failed", "pending")
STATE_FILE = "sweep_state.json"
ERROR_RECORD = "error.json"  # what a failed attempt recorded (failures.record_failure), in the log dir
SUBMITIT_DIR = "submitit"  # submitit's pickles and the job's own stdout/stderr, in the row's log dir

# squeue's job states (squeue -t all), grouped by what they mean for a run.
SLURM_WAITING = frozenset(
    {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "STOPPED"}
)
SLURM_RUNNING = frozenset({"RUNNING", "CONFIGURING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT"})
SLURM_IN_FLIGHT = SLURM_WAITING | SLURM_RUNNING


def work_dir_of(row: PlanRow) -> Path:
    out = Path(row.outputs)
    return out.parent if row.kind == "data" else out.parent.parent


def log_dir(row: PlanRow) -> Path:
    """stdout.log, stderr.log and sweep_state.json of a row: the run dir itself for training
    runs (so a run's logs travel with it), WORK/logs/RUN_ID for betons and data."""
    if row.kind in TRAIN_KINDS:
        return Path(row.outputs)
    return work_dir_of(row) / "logs" / row.run_id


def job_logs(row: PlanRow, job_id: str) -> tuple[Path, Path]:
    """The SLURM job's own stdout and stderr (submitit's names; a requeued job appends)."""
    folder = log_dir(row) / SUBMITIT_DIR
    return folder / f"{job_id}_0_log.out", folder / f"{job_id}_0_log.err"


def is_complete(row: PlanRow) -> bool:
    out = Path(row.outputs)
    if row.kind == "data":
        return out.is_dir()
    if row.kind == "beton":
        # Written: the beton and its manifest. A damaged copy stays "done" here and its reader
        # fails at once with check_beton's one-line error (--verify-betons checks up front).
        return out.is_file() and valid_json(manifest_path(out), "classes")
    # A corrupt or partial summary.json is "not done" (reported once on stderr), so the run
    # is run again rather than trusted or aborting the sweep.
    return read_summary(out) is not None


def valid_json(path: Path, required_key: str) -> bool:
    try:
        return required_key in json.loads(path.read_text())
    except (OSError, ValueError):
        return False


def read_state(row: PlanRow) -> dict:
    try:
        return json.loads((log_dir(row) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write_state(row: PlanRow, **state) -> None:
    """Replace the row's sweep_state.json atomically (readers never see half a file)."""
    d = log_dir(row)
    d.mkdir(parents=True, exist_ok=True)
    state = {"run_id": row.run_id, "host": socket.gethostname(), "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **state}
    write_text_atomic(d / STATE_FILE, json.dumps(state, indent=1))


def restore_state(row: PlanRow, previous: dict) -> None:
    """Put back a state read earlier (a submission that was cancelled again)."""
    path = log_dir(row) / STATE_FILE
    if previous:
        write_text_atomic(path, json.dumps(previous, indent=1))
    else:
        path.unlink(missing_ok=True)


def slurm_job_of(state: dict) -> str | None:
    """The SLURM job id a state refers to (not submitit's local executor's pseudo ids)."""
    job = state.get("job_id")
    if not job:
        return None
    return str(job) if state.get("scheduler", "slurm") == "slurm" else None


# ------------------------------------------------------------------------------ asking SLURM


def squeue_states(job_ids: Iterable[str]) -> dict[str, str] | None:
    """job id -> squeue's state (PENDING, RUNNING, COMPLETED, TIMEOUT, ...) for the jobs SLURM
    still remembers, in one call; a job missing from the dict ended long enough ago to be
    forgotten (or never existed). None where SLURM cannot be asked (no squeue here, or it
    failed): callers then go by the run dirs alone."""
    ids = sorted({str(j) for j in job_ids}, key=lambda j: (len(j), j))
    if not ids:
        return {}
    if not shutil.which("squeue"):
        return None
    try:
        out = subprocess.run(
            ["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        # Every id unknown: squeue says "Invalid job id specified" (some unknown: it lists the rest).
        return {} if "Invalid job id" in out.stderr else None
    states = {}
    for line in out.stdout.splitlines():
        job, _, state = line.strip().partition("|")
        if job in ids:
            states[job] = state.split()[0] if state else ""
    return states


_END_LINE = re.compile(r"\*\*\* JOB (\d+) ON \S+ CANCELLED AT (\S+)(?: DUE TO ([A-Z ]+?))?(?: \(|\s*\*\*\*)")


def job_end_reason(row: PlanRow, job_id: str) -> str:
    """Why SLURM stopped the job, from slurmstepd's last line in the job's log, e.g.
    "cancelled at 2026-11-27T11:52:59", "time limit at ...", "preemption at ..."; "" if the
    log says nothing (it ended by itself, or it never started)."""
    found = ""
    for path in job_logs(row, job_id):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for m in _END_LINE.finditer(text):
            if m.group(1) == str(job_id):
                why = (m.group(3) or "cancelled").strip().lower()
                found = f"{why} at {m.group(2)}"
    return found


def describe_slurm_state(state: str) -> str:
    """squeue's state as a phrase, "" when SLURM has forgotten the job."""
    return state.lower().replace("_", " ") if state else ""


# ------------------------------------------------------------------------------ row status


@dataclass(frozen=True)
class RowStatus:
    row: PlanRow
    status: str
    attempts: int = 0
    detail: str = ""  # error line, pid or job id, why it stopped
    job_id: str = ""  # the SLURM job of its last submission, if any

    @property
    def job_logs(self) -> tuple[Path, Path] | None:
        return job_logs(self.row, self.job_id) if self.job_id else None


_ASK = object()


def row_status(row: PlanRow, queue: Mapping[str, str] | None | object = _ASK) -> RowStatus:
    """The row's status. `queue`: squeue_states() for this plan's jobs (asked here if not
    given; None = SLURM cannot be asked)."""
    st = read_state(row)
    attempt = int(st.get("attempt", 0) or 0)
    job = slurm_job_of(st) or ""
    if is_complete(row):
        return RowStatus(row, "done", attempt, job_id=job)
    status = st.get("status")
    if job and status in ("queued", "running", "interrupted"):
        if queue is _ASK:
            queue = squeue_states([job])
        return _slurm_row_status(row, st, attempt, job, queue)
    if status == "running":
        if st.get("host") == socket.gethostname() and pid_alive(int(st.get("pid", 0) or 0)):
            return RowStatus(row, "running", attempt, f"pid {st['pid']}")
        return RowStatus(row, "pending", attempt, "interrupted")
    if status == "failed":
        return RowStatus(row, "failed", attempt, failure_detail(st), job_id=job)
    if status in ("interrupted", "queued"):  # stopped with its sweep (Ctrl-C, SIGTERM): runs again next time
        return RowStatus(row, "pending", attempt, "interrupted")
    return RowStatus(row, "pending", attempt)


def failure_detail(st: dict) -> str:
    """A failed state's line: the error, after its kind when a retry cannot help."""
    error = st.get("error", "")
    return f"{st.get('error_kind')}, not retried: {error}" if st.get("permanent") else error


def _slurm_row_status(row: PlanRow, st: dict, attempt: int, job: str, queue) -> RowStatus:
    status = st["status"]
    if queue is None:  # no squeue here (or it failed): the run dir's last word
        shown = "pending" if status == "interrupted" else status
        return RowStatus(
            row,
            shown,
            attempt,
            f"job {job}; SLURM cannot be asked from here, so this is the run dir's last record ({status})",
            job,
        )
    sq = queue.get(job, "")
    if sq in SLURM_WAITING:
        again = ", requeued" if status in ("running", "interrupted") or st.get("restarts") else ""
        return RowStatus(row, "queued", attempt, f"job {job}{again}", job)
    if sq in SLURM_RUNNING:
        return RowStatus(row, "running", attempt, f"job {job}", job)
    # The job is over but the run is not done.
    known = f"SLURM says {describe_slurm_state(sq)}" if sq else "SLURM no longer knows the job (no accounting)"
    if status == "queued":
        return RowStatus(
            row, "pending", attempt, f"job {job} never started ({known}): cancelled, or a dependency failed", job
        )
    reason = job_end_reason(row, job)
    why = f"stopped by SLURM: {reason}" if reason else f"ended without finishing the run ({known})"
    return RowStatus(
        row,
        "pending",
        attempt,
        f"interrupted: job {job} {why}; the next ffcv-sweep run resumes it from its last checkpoint",
        job,
    )


def plan_status(rows: Sequence[PlanRow]) -> list[RowStatus]:
    """Every row's status, with one squeue call for all of the plan's SLURM jobs."""
    jobs = []
    for r in rows:
        st = read_state(r)
        if slurm_job_of(st) and st.get("status") in ("queued", "running", "interrupted"):
            jobs.append(slurm_job_of(st))
    queue = squeue_states(jobs) if jobs else {}
    return [row_status(r, queue) for r in rows]


def count_statuses(statuses: Sequence[RowStatus]) -> dict[str, dict[str, int]]:
    """kind -> status -> count, in plan kind order."""
    out: dict[str, dict[str, int]] = {}
    for s in statuses:
        out.setdefault(s.row.kind, {k: 0 for k in STATUSES})[s.status] += 1
    return out
