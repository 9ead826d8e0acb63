"""Where each run of a plan stands, read from the files it leaves (no database to go stale).

done     its outputs are complete: a complete summary.json (training, read by rundir.read_summary,
         as ffcv-analyze reads it), beton + manifest, data dir
running  a sweep_state.json says running and its process (this host) or SLURM job is alive
queued   submitted to SLURM and not started
failed   the last attempt failed (sweep_state.json keeps the return code and the error line)
pending  none of the above, including runs whose sweep was interrupted
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..atomic import pid_alive, write_text_atomic
from ..rundir import read_summary
from .plan import TRAIN_KINDS, PlanRow

STATUSES = ("done", "running", "queued", "failed", "pending")
STATE_FILE = "sweep_state.json"


def work_dir_of(row: PlanRow) -> Path:
    out = Path(row.outputs)
    return out.parent if row.kind == "data" else out.parent.parent


def log_dir(row: PlanRow) -> Path:
    """stdout.log, stderr.log and sweep_state.json of a row: the run dir itself for training
    runs (so a run's logs travel with it), WORK/logs/RUN_ID for betons and data."""
    if row.kind in TRAIN_KINDS:
        return Path(row.outputs)
    return work_dir_of(row) / "logs" / row.run_id


def is_complete(row: PlanRow) -> bool:
    out = Path(row.outputs)
    if row.kind == "data":
        return out.is_dir()
    if row.kind == "beton":
        return out.is_file() and valid_json(out.with_suffix(".json"), "classes")
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
    state = {"run_id": row.run_id, "host": socket.gethostname(), "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
             **state}
    write_text_atomic(d / STATE_FILE, json.dumps(state, indent=1))


def slurm_job_alive(job_id: str) -> bool | None:
    """True/False from squeue; None where SLURM cannot be asked (no squeue here)."""
    if not shutil.which("squeue"):
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bool(out.stdout.strip())


@dataclass(frozen=True)
class RowStatus:
    row: PlanRow
    status: str
    attempts: int = 0
    detail: str = ""  # error line, pid or job id


def row_status(row: PlanRow) -> RowStatus:
    if is_complete(row):
        return RowStatus(row, "done", read_state(row).get("attempt", 0))
    st = read_state(row)
    status, attempt = st.get("status"), st.get("attempt", 0)
    if status in ("running", "queued"):
        if st.get("job_id"):
            alive = slurm_job_alive(st["job_id"])
            # A job that vanished while "running" died without reporting (killed, node lost).
            if alive is False:
                return RowStatus(row, "failed", attempt, f"SLURM job {st['job_id']} ended without a result")
            if status == "queued" or alive is None:
                return RowStatus(row, status, attempt, f"job {st['job_id']}")
            return RowStatus(row, "running", attempt, f"job {st['job_id']}")
        if st.get("host") == socket.gethostname() and pid_alive(int(st.get("pid", 0) or 0)):
            return RowStatus(row, "running", attempt, f"pid {st['pid']}")
        return RowStatus(row, "pending", attempt, "interrupted")
    if status == "failed":
        return RowStatus(row, "failed", attempt, st.get("error", ""))
    if status == "interrupted":  # stopped with its sweep (Ctrl-C, SIGTERM): runs again next time
        return RowStatus(row, "pending", attempt, "interrupted")
    return RowStatus(row, "pending", attempt)


def plan_status(rows: Sequence[PlanRow]) -> list[RowStatus]:
    return [row_status(r) for r in rows]


def count_statuses(statuses: Sequence[RowStatus]) -> dict[str, dict[str, int]]:
    """kind -> status -> count, in plan kind order."""
    out: dict[str, dict[str, int]] = {}
    for s in statuses:
        out.setdefault(s.row.kind, {k: 0 for k in STATUSES})[s.status] += 1
    return out
