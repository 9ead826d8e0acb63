"""ffcv-sweep on a real SLURM cluster: slurmctld + slurmd on this machine (tests/helpers/slurm_cluster.py,
the session fixture `slurm_cluster`), the real submitit SlurmExecutor, real sbatch / srun /
scancel / scontrol, and no accounting (sacct is disabled, as on many small clusters).

Every training run pays ~8-15 s of ffcv / numba start-up on CPU, so the tests share what they
can: the data and betons of the local smoke slice (`smoke_grid`, made once per session for the
other sweep tests) are linked into each test's work dir, and each test runs one or a few rows.
Runs that are interrupted on purpose use 6 epochs of 6 steps (~1-2 s an epoch here), so that
there is an epoch to lose between the first checkpoint and the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from ffcv_inat.analyze.cli import main as analyze_main
from ffcv_inat.analyze.table import gather
from ffcv_inat.beton.manifest import read_manifest
from ffcv_inat.beton.view import VIEW_SUFFIX, parent_of
from ffcv_inat.sweep import slurm as sweep_slurm
from ffcv_inat.sweep.cli import main as sweep_main
from ffcv_inat.sweep.executors import betons_to_verify
from ffcv_inat.sweep.slurm import SlurmOptions, ended_early, job_resources
from ffcv_inat.sweep.plan import read_plan, with_dependencies
from ffcv_inat.sweep.state import job_end_reason, job_logs, log_dir, plan_status, read_state, row_status, write_state

SLURM = ["--executor", "slurm", "--cpus-per-task", "1", "--poll-seconds", "1"]
LONGER = ("schedule.epochs=6", "schedule.max_steps_per_epoch=6")  # an epoch to lose when interrupted
INAT = ("inat-mini-a_train", "inat-mini-a_eval")
IMAGENET_A = ("imagenet_A_train", "imagenet_A_val")


def sweep(*args):
    return CliRunner().invoke(sweep_main, [str(a) for a in args])


def only(*ids: str) -> list[str]:
    return [a for i in ids for a in ("--only", i)]


def beton_files(betons: Path, name: str) -> list[Path]:
    """What a class set of the smoke plan is stored as: a view and its parent beton with its
    manifest, or a beton and its manifest."""
    view = betons / f"{name}{VIEW_SUFFIX}"
    if view.is_file():
        parent = parent_of(view, read_manifest(view))
        return [view, parent, parent.with_suffix(".json")]
    return [betons / f"{name}.beton", betons / f"{name}.json"]


def make_work(factory, smoke_grid, name: str, betons=(), sets=()):
    """A smoke plan in a fresh work dir, with the session's synthetic data and some of its
    betons linked in (hard links: a beton is never changed in place, only replaced)."""
    work = factory.mktemp(name)
    plan = work / "plan.csv"
    r = sweep("plan", "--grid", "smoke", *[a for s in sets for a in ("--set", s)], "--out", plan)
    assert r.exit_code == 0, r.output
    (work / "data").symlink_to(smoke_grid["work"] / "data")
    (work / "betons").mkdir()
    for b in betons:
        for path in beton_files(smoke_grid["work"] / "betons", b):
            if not (work / "betons" / path.name).exists():  # views of one split share their parent
                os.link(path, work / "betons" / path.name)
    return plan, work, {r.run_id: r for r in read_plan(plan)}


def log_lines(run: Path) -> list[str]:
    try:
        return (run / "log.jsonl").read_text().splitlines()
    except OSError:
        return []


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def epochs_logged(run: Path, more_than: int = 0, timeout: float = 120) -> list[str]:
    """log.jsonl once it has more than `more_than` epochs (the trainer writes it after last.pt)."""
    return wait_for(
        lambda: (lines := log_lines(run)) and len(lines) > more_than and lines,
        timeout,
        f"epoch {more_than + 1} of {run.name}",
    )


def job_of(row) -> str:
    return wait_for(lambda: read_state(row).get("job_id"), 60, f"{row.run_id}'s job id")


def submission_script(row, job: str) -> str:
    return (log_dir(row) / "submitit" / f"{job}_submission.sh").read_text()


def assert_queue_empty(cluster) -> None:
    wait_for(lambda: cluster.run("squeue", "-h").stdout.strip() == "", 60, "an empty queue")


# ------------------------------------------------------------------------------ the grid on SLURM


@pytest.mark.timeout(900)  # the first user of smoke_grid in a session also makes it (~2 min)
def test_smoke_slice_runs_through_slurm_and_analyses_like_the_local_one(
    slurm_cluster, smoke_grid, tmp_path_factory, tmp_path
):
    # SLURM writes the R-8 views of ImageNet, pretrains on them, then finetunes and probes: every
    # kind of job.
    plan, work, rows = make_work(tmp_path_factory, smoke_grid, "slurm_smoke", betons=(*IMAGENET_A, *INAT))
    ids = ("finetune_R-8-s0", "linear_R-8-s0")
    r = sweep(
        "run",
        plan,
        *SLURM,
        "--max-parallel",
        "2",
        "--verify-betons",
        "--setup",
        "echo setup line ran",
        "--sbatch",
        "--comment=ffcv-sweep-test",
        *only(*ids),
    )
    assert r.exit_code == 0, r.output
    assert "verified 4 betons" in r.output
    assert "12 runs: 7 already done, 0 already submitted, 5 to submit (SLURM)" in r.output
    slice_rows = with_dependencies(read_plan(plan), ids)
    assert {s.row.run_id: s.status for s in plan_status(slice_rows)} == {x.run_id: "done" for x in slice_rows}
    jobs = []
    for rid in ("beton_imagenet_R-8-s0_train", "beton_imagenet_R-8-s0_val", "pretrain_R-8-s0", *ids):
        st = read_state(rows[rid])
        assert st["status"] == "done" and st["scheduler"] == "slurm" and st["attempt"] == 1, st
        script = submission_script(rows[rid], st["job_id"])
        assert "gres" not in script and "gpus" not in script  # CPU jobs ask SLURM for no GPU
        for line in ("#SBATCH --cpus-per-task=1", "#SBATCH --comment=ffcv-sweep-test", "echo setup line ran"):
            assert line in script
        assert "setup line ran" in job_logs(rows[rid], st["job_id"])[0].read_text()
        jobs.append((rid, script))
    # --max-parallel 2: the first two jobs start the two lanes, every later one waits for its
    # lane's previous job (afterany) besides its own dependencies (afterok).
    assert [("afterany:" in script) for _, script in jobs] == [False, False, True, True, True]
    assert "afterok:" in dict(jobs)["finetune_R-8-s0"]

    # ffcv-analyze reads the SLURM runs as it reads the local executor's.
    out = tmp_path / "analysis"
    r = CliRunner().invoke(analyze_main, [str(work / "runs"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    slurm = pd.read_csv(out / "results.csv").set_index("run")
    local = gather(smoke_grid["work"] / "runs").set_index("run")
    assert list(slurm.columns) == list(local.columns)
    same = ["pretrain_R-8-s0", *ids]
    meta = [
        "kind",
        "family",
        "subset",
        "k",
        "num_pretrain_classes",
        "seed",
        "target",
        "num_classes",
        "epochs",
        "gpu_hours",
    ]
    assert sorted(slurm.index) == sorted(same)
    for col in meta:
        a, b = slurm.loc[same, col], local.loc[same, col]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            assert (a.astype(float) - b.astype(float)).abs().max() < 1e-9, col
        else:
            assert list(a) == list(b), col
    assert slurm["top1"].between(0, 1).all() and slurm["device"].str.contains("CPU").all()


@pytest.mark.timeout(300)
def test_preempted_or_timed_out_job_resumes_from_last_checkpoint(slurm_cluster, smoke_grid, tmp_path_factory):
    plan, _, rows = make_work(tmp_path_factory, smoke_grid, "slurm_requeue", betons=INAT, sets=LONGER)
    row = rows["scratch_s0"]
    run = Path(row.outputs)
    r = sweep("run", plan, *SLURM, "--no-wait", *only("scratch_s0"))
    assert r.exit_code == 0 and "not waiting" in r.output, r.output
    job = job_of(row)

    # Preemption: SLURM requeues the running job (what a preempting cluster does).
    first = epochs_logged(run)
    slurm_cluster.run("scontrol", "requeue", job)
    wait_for(lambda: read_state(row).get("status") == "interrupted", 60, "the run to be stopped")
    slurm_cluster.wait_state(job, {"PENDING"})
    r = sweep("status", plan)
    assert f"queued   scratch_s0 (job {job}, requeued)" in r.output, r.output
    slurm_cluster.start_requeued_now(job)

    # The time limit: 90 s before it SLURM sends USR2 (sbatch --signal=USR2@90); submitit calls
    # RowJob.checkpoint and requeues the job itself.
    wait_for(lambda: read_state(row).get("restarts") == 1, 60, "the requeued job to start")
    second = epochs_logged(run, more_than=len(first))
    slurm_cluster.run("scancel", "--signal=USR2", job)
    slurm_cluster.start_requeued_now(job)

    wait_for(lambda: read_state(row).get("status") == "done", 180, "the run to finish")
    log = log_lines(run)
    assert [json.loads(line)["epoch"] for line in log] == [1, 2, 3, 4, 5, 6]
    # Finished epochs were not trained again (their records, timings included, are unchanged):
    # each interruption lost at most the epoch in progress.
    assert log[: len(first)] == first and log[: len(second)] == second
    st = read_state(row)
    assert st["job_id"] == job and st["restarts"] == 2 and st["attempt"] == 1  # one job, never a failed attempt
    assert (run / "stderr.log").read_text().count("=== ffcv-sweep attempt 1,") == 3
    out, err = (p.read_text() for p in job_logs(row, job))
    assert err.count(f"JOB {job} ON") == 2 and "DUE TO JOB REQUEUE" in err
    assert "Caught signal SIGUSR2" in out + err and "Calling checkpoint method" in out + err
    assert slurm_cluster.wait_state(job, {"COMPLETED"}) == "COMPLETED"


@pytest.mark.timeout(300)
def test_scancel_is_reported_and_the_next_sweep_resumes_the_run(slurm_cluster, smoke_grid, tmp_path_factory):
    plan, _, rows = make_work(tmp_path_factory, smoke_grid, "slurm_scancel", betons=IMAGENET_A, sets=LONGER)
    row = rows["linear_random-s0"]
    run = Path(row.outputs)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ffcv_inat.sweep.cli", "run", str(plan), *SLURM, *only("linear_random-s0")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        before = epochs_logged(run)
        job = read_state(row)["job_id"]
        slurm_cluster.run("scancel", job)
        out, _ = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 1, out
    assert f"linear_random-s0: job {job} stopped (cancelled at" in out and "1 stopped" in out, out

    r = sweep("status", plan)
    assert r.exit_code == 0
    assert f"pending  linear_random-s0 (interrupted: job {job} stopped by SLURM: cancelled at" in r.output, r.output
    out_log, err_log = job_logs(row, job)
    assert f"job {job} log: {out_log}, {err_log.name}" in r.output
    # Without accounting SLURM forgets the job minutes later; the run dir and the job's log still tell.
    forgotten = row_status(row, {})
    assert forgotten.status == "pending" and "cancelled at" in forgotten.detail
    unreachable = row_status(row, None)  # no squeue here at all
    assert unreachable.status == "pending" and "SLURM cannot be asked" in unreachable.detail

    r = sweep("run", plan, *SLURM, *only("linear_random-s0"))
    assert r.exit_code == 0, r.output
    assert "1 to submit (SLURM)" in r.output and "linear_random-s0: done" in r.output
    log = log_lines(run)
    assert len(log) == 6 and log[: len(before)] == before  # resumed from last.pt


@pytest.mark.timeout(300)
def test_bad_input_fails_once_with_its_error_and_log_paths(slurm_cluster, smoke_grid, tmp_path_factory):
    plan, work, rows = make_work(tmp_path_factory, smoke_grid, "slurm_bad_input", betons=("imagenet_R-8-s0_val", *INAT))
    # The R-8 train view, and a cut copy of its parent beside the parent's intact manifest: the
    # sweep takes them as written.
    view, parent, manifest = beton_files(smoke_grid["work"] / "betons", "imagenet_R-8-s0_train")
    for path in (view, manifest):
        (work / "betons" / path.name).write_bytes(path.read_bytes())
    (work / "betons" / parent.name).write_bytes(parent.read_bytes()[:100_000])
    pre, fine = rows["pretrain_R-8-s0"], rows["finetune_R-8-s0"]

    # --verify-betons refuses before anything is submitted, naming the damaged beton.
    r = sweep("run", plan, *SLURM, "--verify-betons", *only("finetune_R-8-s0"))
    assert r.exit_code == 1
    assert "Error: 1 of 4 betons failed verification" in r.output and "truncated copy?" in r.output
    assert read_state(pre) == {} and read_state(fine) == {}

    r = sweep("run", plan, *SLURM, *only("finetune_R-8-s0"))
    assert r.exit_code == 1
    st = read_state(pre)
    job = st["job_id"]
    # The run records a permanent failure (a damaged beton): not tried again; the job fails once
    # (FAILED, never requeued), and SLURM cancels the finetune that needed it (afterok,
    # kill-on-invalid-dep).
    assert st["status"] == "failed" and st["attempt"] == 1 and "truncated copy?" in st["error"]
    assert st["error_kind"] == "input" and st["permanent"] is True
    assert f"pretrain_R-8-s0: FAILED (job {job}) after 1 attempts: " in r.output
    assert "finetune_R-8-s0: cancelled by SLURM, a dependency failed" in r.output
    assert "0 ran, 7 already done, 1 failed, 1 blocked" in r.output
    assert (Path(pre.outputs) / "stderr.log").read_text().count("truncated copy?") == 1
    assert slurm_cluster.wait_state(job, {"FAILED"}) == "FAILED"
    assert "Restarts=0" in slurm_cluster.run("scontrol", "show", "job", job).stdout
    assert not (Path(fine.outputs) / "stderr.log").exists()  # never started
    r = sweep("status", plan)
    assert "failed   pretrain_R-8-s0, 1 attempts (input, not retried: " in r.output
    assert f"logs: {Path(pre.outputs)}/stdout.log, stderr.log" in r.output
    assert f"job {job} log: {job_logs(pre, job)[0]}" in r.output
    assert "pending  finetune_R-8-s0 (job " in r.output and "never started" in r.output


RANK_WRITES = """
import os
if os.environ.get("RANK") is not None and os.environ.get("RANK_WRITES_DIR"):
    _replace = os.replace

    def _recording_replace(src, dst, *args, **kwargs):
        _replace(src, dst, *args, **kwargs)
        with open(os.path.join(os.environ["RANK_WRITES_DIR"], "rank" + os.environ["RANK"] + ".txt"), "a") as f:
            f.write(str(dst) + "\\n")

    os.replace = _recording_replace
"""


@pytest.mark.timeout(300)
def test_two_processes_on_cpu_only_rank0_writes(slurm_cluster, smoke_grid, tmp_path_factory, tmp_path, monkeypatch):
    # The plan says device=auto; --gpus-per-run 0 makes it a CPU run that asks SLURM for no GPU.
    plan, _, rows = make_work(tmp_path_factory, smoke_grid, "slurm_ddp", betons=INAT, sets=("device=auto",))
    row = rows["scratch_s0"]
    hooks, writes = tmp_path / "hooks", tmp_path / "writes"
    hooks.mkdir()
    writes.mkdir()
    # Every Python process the job starts records which files it moves into place, by RANK
    # (torchrun's processes have one; the sweep's own processes do not record).
    (hooks / "sitecustomize.py").write_text(RANK_WRITES)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("RANK_WRITES_DIR", str(writes))
    r = sweep(
        "run",
        plan,
        "--executor",
        "slurm",
        "--cpus-per-task",
        "2",
        "--poll-seconds",
        "1",
        "--gpus-per-run",
        "0",
        "--procs-per-run",
        "2",
        *only("scratch_s0"),
    )
    assert r.exit_code == 0, r.output
    run = Path(row.outputs)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and "CPU" in summary["device"]
    st = read_state(row)
    header = next(ln for ln in (run / "stderr.log").read_text().splitlines() if ln.startswith("=== ffcv-sweep"))
    assert st["procs"] == 2 and "torchrun --standalone --nproc_per_node=2" in header
    assert header.endswith("--set device=auto --set device=cpu --resume")  # added by --gpus-per-run 0
    script = submission_script(row, st["job_id"])
    assert "#SBATCH --cpus-per-task=2" in script and "gres" not in script and "srun" in script
    written = {p.name: p.read_text().split() for p in writes.iterdir()}
    assert set(written) == {"rank0.txt"}, written  # rank 1 moved nothing into place
    assert {Path(p).name for p in written["rank0.txt"]} == {
        "best.pt",
        "config.yaml",
        "last.pt",
        "log.jsonl",
        "per_class.csv",
        "summary.json",
    }
    assert (run / "stdout.log").read_text().count("run dir:") == 1  # one report, from rank 0


@pytest.mark.timeout(180)
def test_sbatch_refusal_is_one_line_naming_the_option_and_leaves_no_job(slurm_cluster, tmp_path, monkeypatch):
    # A plan whose training runs may use a GPU (device=auto) asks SLURM for one by default; this
    # cluster has none, as a CPU partition would.
    plan = tmp_path / "plan.csv"
    assert sweep("plan", "--grid", "smoke", "--set", "device=auto", "--out", plan).exit_code == 0
    r = sweep("run", plan, *SLURM, *only("pretrain_R-8-s0"))
    assert r.exit_code == 1
    assert r.output.splitlines()[-1] == (
        "Error: sbatch refused the training job of pretrain_R-8-s0: sbatch: error: Invalid generic resource (gres) "
        "specification (check --gpus-per-run / --gres: this partition has no such GPUs (--gpus-per-run 0 trains "
        "on CPU))"
    )
    assert "Traceback" not in r.output and not list(tmp_path.rglob("sweep_state.json"))  # nothing submitted
    assert_queue_empty(slurm_cluster)

    # Should sbatch refuse only after some jobs went in (the check bypassed here), those are cancelled.
    monkeypatch.setattr(sweep_slurm, "preflight", lambda rows, opts: None)
    r = sweep("run", plan, *SLURM, *only("pretrain_R-8-s0"))
    assert r.exit_code == 1 and "Traceback" not in r.output
    last = r.output.splitlines()[-1]
    assert "Invalid generic resource (gres) specification" in last
    # the data, ImageNet's train and val betons and the two R-8 views went in before it
    assert "; cancelled the 5 jobs this sweep had just submitted (" in last, last
    cancelled = last.rsplit("(", 1)[1].rstrip(")").split(", ")
    assert len(cancelled) == 5
    for job in cancelled:
        wait_for(lambda: slurm_cluster.job_state(job) in ("", "CANCELLED"), 60, f"job {job} cancelled")
    assert_queue_empty(slurm_cluster)


# ------------------------------------------------------------------------------ without a cluster


def test_run_help_shows_every_cluster_option():
    r = sweep("run", "--help")
    for option in (
        "--slurm-partition",
        "--slurm-account",
        "--slurm-qos",
        "--timeout-min",
        "--gres",
        "--slurm-constraint",
        "--mem-gb",
        "--cpus-per-task",
        "--max-parallel",
        "--sbatch",
        "--setup",
        "--gpus-per-run",
        "--procs-per-run",
        "--verify-betons",
        "--no-wait",
    ):
        assert option in r.output, option


def test_each_option_reaches_sbatch_and_cpu_jobs_ask_for_no_gpu(tmp_path):
    plan = tmp_path / "plan.csv"
    assert sweep("plan", "--grid", "smoke", "--out", plan).exit_code == 0
    rows = {r.run_id: r for r in read_plan(plan)}
    assert sweep("plan", "--grid", "smoke", "--set", "device=auto", "--out", tmp_path / "gpu.csv").exit_code == 0
    gpu_row = next(r for r in read_plan(tmp_path / "gpu.csv") if r.run_id == "pretrain_all-s0")
    opts = SlurmOptions(
        partition="gpu",
        account="lab",
        qos="high",
        constraint="a100",
        gpus_per_run=8,
        cpus_per_task=64,
        mem_gb=500,
        sbatch=("--exclusive", "#SBATCH --mail-type=END"),
    )
    assert job_resources(gpu_row, opts) == {
        "partition": "gpu",
        "account": "lab",
        "qos": "high",
        "constraint": "a100",
        "cpus-per-task": "64",
        "mem": "500G",
        "gres": "gpu:8",
        "exclusive": True,
        "mail-type": "END",
    }
    assert job_resources(gpu_row, SlurmOptions(gres="gpu:h100:8", gpus_per_run=8))["gres"] == "gpu:h100:8"
    assert "gres" not in job_resources(gpu_row, SlurmOptions(gpus_per_run=0))
    for rid in ("data_synthetic", "beton_imagenet_all_train", "pretrain_all-s0"):  # the smoke grid says device=cpu
        assert "gres" not in job_resources(rows[rid], opts), rid
    r = sweep("run", plan, "--executor", "slurm", "--gres", "gpu:8", "--gpus-per-run", "2")
    assert r.exit_code == 1 and "--gres gpu:8 asks for 8 GPUs but --gpus-per-run is 2" in r.output
    r = sweep("run", plan, "--executor", "slurm", "--sbatch", "-N 2")
    assert r.exit_code == 1 and "give one long sbatch option" in r.output


def test_why_slurm_ended_a_job_is_read_from_its_log(tmp_path):
    plan = tmp_path / "plan.csv"
    assert sweep("plan", "--grid", "smoke", "--out", plan).exit_code == 0
    row = next(r for r in read_plan(plan) if r.run_id == "scratch_s0")
    out, err = job_logs(row, "41")
    err.parent.mkdir(parents=True)
    # slurmstepd's own lines, as SLURM 22.05 writes them into a job's stderr
    err.write_text(
        "slurmstepd-vm: error: *** JOB 41 ON vm CANCELLED AT 2026-11-27T11:52:32 DUE TO JOB REQUEUE ***\n"
        "slurmstepd-vm: error: *** STEP 41.0 ON vm CANCELLED AT 2026-11-27T11:54:07 DUE TO TIME LIMIT ***\n"
        "slurmstepd-vm: error: *** JOB 41 ON vm CANCELLED AT 2026-11-27T11:54:07 DUE TO TIME LIMIT ***\n"
    )
    assert job_end_reason(row, "41") == "time limit at 2026-11-27T11:54:07"
    assert ended_early("", job_end_reason(row, "41"))  # a waiting sweep submits it again
    err.write_text("slurmstepd-vm: error: *** JOB 41 ON vm CANCELLED AT 2026-11-27T11:52:59 ***\n")
    assert job_end_reason(row, "41") == "cancelled at 2026-11-27T11:52:59"
    assert not ended_early("", job_end_reason(row, "41"))  # scancel: the user's decision
    assert ended_early("NODE_FAIL", "") and ended_early("TIMEOUT", "") and not ended_early("CANCELLED", "")
    write_state(row, status="running", attempt=1, job_id="41", scheduler="slurm")
    s = row_status(row, {})  # SLURM forgot the job: no accounting
    assert s.status == "pending" and "cancelled at 2026-11-27T11:52:59" in s.detail
    write_state(row, status="queued", attempt=0, job_id="41", scheduler="slurm")
    assert "never started" in row_status(row, {}).detail
    assert row_status(row, {"41": "PENDING"}).status == "queued"
    assert row_status(row, {"41": "RUNNING"}).status == "running"


def test_verify_betons_takes_the_inputs_this_sweep_does_not_write(tmp_path):
    plan = tmp_path / "plan.csv"  # copies: every input a beton of its own (views: the SLURM smoke test)
    assert sweep("plan", "--grid", "smoke", "--betons", "copies", "--out", plan).exit_code == 0
    rows = with_dependencies(read_plan(plan), ["finetune_R-8-s0", "linear_R-8-s0"])
    assert betons_to_verify(rows) == []  # no beton exists: the sweep writes every one it reads
    betons = tmp_path / "betons"
    betons.mkdir()
    for name in ("inat-mini-a_train", "inat-mini-a_eval", "imagenet_A_train"):  # complete: beton + manifest
        (betons / f"{name}.beton").write_bytes(b"x")
        (betons / f"{name}.json").write_text('{"classes": []}')
    (betons / "imagenet_A_val.beton").write_bytes(b"x")  # no manifest: the sweep writes it again
    assert betons_to_verify(rows) == [
        str(betons / f"{n}.beton") for n in ("inat-mini-a_train", "inat-mini-a_eval", "imagenet_A_train")
    ]
    r = sweep("run", plan, "--verify-betons", *only("finetune_R-8-s0"))
    assert r.exit_code == 1 and "Error: 2 of 2 betons failed verification" in r.output  # before any run started
    assert not (tmp_path / "logs").exists() and not (tmp_path / "runs").exists()


def test_waiting_sweep_submits_again_a_job_that_slurm_ended_early(tmp_path, monkeypatch):
    """The sweep's own retry, with squeue and sbatch played by the test: the pretraining job
    is killed at its time limit (TIMEOUT, not requeued), SLURM cancels the finetune that
    waited for it; the sweep submits both again, the finetune after the new job."""
    plan = tmp_path / "plan.csv"
    assert sweep("plan", "--grid", "smoke", "--out", plan).exit_code == 0
    rows = with_dependencies(read_plan(plan), ["finetune_R-8-s0"])
    by_id = {r.run_id: r for r in rows}
    (tmp_path / "data").mkdir()
    for r in rows:
        if r.kind == "beton":  # complete: a beton with its manifest
            Path(r.outputs).parent.mkdir(exist_ok=True)
            Path(r.outputs).write_bytes(b"x")
            Path(r.outputs).with_suffix(".json").write_text('{"classes": []}')
    pre, fine = by_id["pretrain_R-8-s0"], by_id["finetune_R-8-s0"]
    submitted = []

    def fake_submit(cluster, row, opts, attempts, dependency=None, **state):
        job = str(len(submitted) + 1)
        submitted.append((row.run_id, job, dependency))
        write_state(row, status="queued", attempt=0, job_id=job, scheduler="slurm", **state)
        return type("Job", (), {"job_id": job})

    def finish(row, job):
        (Path(row.outputs) / "summary.json").write_text('{"top1": 0.5}')
        write_state(row, status="done", attempt=1, job_id=job, scheduler="slurm")

    def time_limit(row, job):
        write_state(row, status="interrupted", attempt=1, job_id=job, scheduler="slurm")
        job_logs(row, job)[1].parent.mkdir(parents=True, exist_ok=True)
        job_logs(row, job)[1].write_text(
            f"slurmstepd-vm: error: *** JOB {job} ON vm CANCELLED AT 2026-11-27T11:54:07 DUE TO TIME LIMIT ***\n"
        )

    # What squeue says at each poll, and what happened to the runs before it.
    script = [
        (None, {"1": "RUNNING", "2": "PENDING"}),
        (lambda: time_limit(pre, "1"), {"1": "TIMEOUT", "2": "CANCELLED"}),
        (None, {"1": "TIMEOUT", "2": "CANCELLED"}),  # seen twice: over
        (None, {"3": "RUNNING", "4": "PENDING"}),
        (lambda: finish(pre, "3"), {"3": "COMPLETED", "4": "RUNNING"}),
        (lambda: finish(fine, "4"), {"4": "COMPLETED"}),
    ]
    polls = iter(script)

    def fake_squeue(ids):
        before, queue = next(polls)
        if before:
            before()
        return {j: s for j, s in queue.items() if j in set(ids)}

    monkeypatch.setattr(sweep_slurm, "_submit", fake_submit)
    monkeypatch.setattr(sweep_slurm, "squeue_states", fake_squeue)
    monkeypatch.setattr(sweep_slurm, "plan_status", lambda rows: [row_status(r, {}) for r in rows])
    monkeypatch.setattr(sweep_slurm, "preflight", lambda rows, opts: None)
    monkeypatch.setattr(sweep_slurm, "check_slurm_here", lambda: None)
    lines = []
    res = sweep_slurm.run_slurm(rows, SlurmOptions(), poll_seconds=0, echo=lines.append)
    assert res.ok and res.ran == ["pretrain_R-8-s0", "finetune_R-8-s0"], lines
    assert submitted == [
        ("pretrain_R-8-s0", "1", None),
        ("finetune_R-8-s0", "2", "afterok:1"),
        ("pretrain_R-8-s0", "3", None),
        ("finetune_R-8-s0", "4", "afterok:3"),
    ]
    assert any(
        "job 1 stopped by SLURM (time limit at 2026-11-27T11:54:07); submitting it again (1/3)" in ln for ln in lines
    ), lines
