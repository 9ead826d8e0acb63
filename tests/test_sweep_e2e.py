"""ffcv-sweep end to end on CPU: real write-beton / ffcv-train subprocesses, real submitit.

Every ffcv process pays ~10 s of fixed start-up (numba compiles ffcv's kernels at import), so
the session runs one slice of the smoke grid once (smoke_grid) and the tests below remove
and re-make parts of it; test_analyze_smoke.py analyses the same run dirs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ffcv_inat.beton.integrity import check_beton
from ffcv_inat.beton.view import is_view
from ffcv_inat.sweep.executors import run_local
from ffcv_inat.sweep.plan import read_plan, with_dependencies
from ffcv_inat.sweep.state import plan_status, read_state
from ffcv_inat.sweep.cli import main as sweep_main

from helpers.smoke_grid import SMOKE_SLICE as SLICE, only_args as _only

SWEEP = [sys.executable, "-m", "ffcv_inat.sweep.cli"]


def _summary_mtimes(work: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (work / "runs").glob("*/summary.json")}


@pytest.mark.timeout(900)
def test_smoke_slice_runs_end_to_end(smoke_grid):
    rows = with_dependencies(read_plan(smoke_grid["plan"]), SLICE)
    betons = [r for r in rows if r.kind == "beton"]
    assert len(betons) == 8 and len(rows) == 14
    # ImageNet once per split: A and R-8 are views of it, with its integrity record.
    views = {Path(r.outputs).name for r in betons if is_view(r.outputs)}
    assert views == {f"imagenet_{s}_{split}.view.json" for s in ("A", "R-8-s0") for split in ("train", "val")}
    for name in views:
        assert check_beton(smoke_grid["work"] / "betons" / name).num_images > 0
    assert {s.row.run_id: s.status for s in plan_status(rows)} == {r.run_id: "done" for r in rows}
    out = smoke_grid["output"]
    assert "14 runs: 0 already done, 14 to run" in out and "[14/14] scratch_s0: done" in out
    for rid in SLICE:  # each training run's stdout/stderr and state live in its run dir
        run_dir = smoke_grid["work"] / "runs" / rid
        assert (run_dir / "summary.json").is_file() and (run_dir / "per_class.csv").is_file()
        assert "ffcv-train" in (run_dir / "stderr.log").read_text()
        assert read_state(next(r for r in rows if r.run_id == rid))["status"] == "done"
    assert (smoke_grid["work"] / "logs" / "beton_imagenet_R-8-s0_train" / "stdout.log").is_file()
    r = CliRunner().invoke(sweep_main, ["status", str(smoke_grid["plan"])])
    assert r.exit_code == 0
    line = next(ln for ln in r.output.splitlines() if ln.startswith("pretrain"))
    assert line.split()[1:] == ["1", "0", "0", "0", "1", "2"]  # R-8 done; all pending (not in the slice)


@pytest.mark.timeout(600)
def test_interrupted_sweep_resumes_only_what_is_missing(smoke_grid):
    plan, work = smoke_grid["plan"], smoke_grid["work"]
    rows = with_dependencies(read_plan(plan), SLICE)
    # Half-finished: the probe never ran; scratch was killed after its last checkpoint.
    subprocess.run(["rm", "-rf", str(work / "runs" / "linear_random-s0")], check=True)
    for name in ("summary.json", "per_class.csv"):
        (work / "runs" / "scratch_s0" / name).unlink()
    ckpt = work / "runs" / "scratch_s0" / "checkpoints" / "last.pt"
    ckpt_mtime = ckpt.stat().st_mtime_ns
    before = _summary_mtimes(work)
    # Stop a real sweep while the first missing run (the random-init probe) trains: SIGTERM, as
    # `kill` or `timeout` send (Ctrl-C's SIGINT takes the same path through run_row).
    proc = subprocess.Popen(
        [*SWEEP, "run", str(plan), *_only()], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    probe = next(r for r in rows if r.run_id == "linear_random-s0")
    deadline = time.time() + 120
    while read_state(probe).get("status") != "running" and time.time() < deadline:
        time.sleep(0.2)
    assert read_state(probe).get("status") == "running"
    child = read_state(probe)["pid"]
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 143, out
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # the trainer was stopped with the sweep
    status = {s.row.run_id: (s.status, s.detail) for s in plan_status(rows)}
    assert status["linear_random-s0"] == ("pending", "interrupted")
    assert status["scratch_s0"] == ("pending", "")
    assert [rid for rid, (s, _) in status.items() if s != "done"] == ["linear_random-s0", "scratch_s0"]

    res = run_local(rows, echo=lambda s: None)
    assert res.ok and sorted(res.ran) == ["linear_random-s0", "scratch_s0"]
    assert len(res.skipped) == len(rows) - 2
    after = _summary_mtimes(work)
    assert {k: v for k, v in after.items() if k in before} == before  # finished work untouched
    assert read_state(probe)["attempt"] == 1  # an interrupted attempt is not counted against the limit
    assert ckpt.stat().st_mtime_ns == ckpt_mtime  # scratch resumed from its checkpoint: no epoch trained again
    assert (work / "runs" / "scratch_s0" / "summary.json").is_file()


@pytest.mark.timeout(600)
def test_submitit_local_executor_runs_the_plan(smoke_grid):
    plan, work = smoke_grid["plan"], smoke_grid["work"]
    redo = ("finetune_R-8-s0", "linear_R-8-s0")
    for rid in redo:
        subprocess.run(["rm", "-rf", str(work / "runs" / rid)], check=True)
    before = _summary_mtimes(work)
    r = CliRunner().invoke(
        sweep_main, ["run", str(plan), "--executor", "submitit-local", "--max-parallel", "2", *_only()]
    )
    assert r.exit_code == 0, r.output
    assert "12 already done, 0 already submitted, 2 to submit (submitit local executor)" in r.output
    rows = {x.run_id: x for x in read_plan(plan)}
    for rid in redo:
        run_dir = work / "runs" / rid
        st = read_state(rows[rid])
        assert st["status"] == "done" and st["job_id"]
        assert json.loads((run_dir / "summary.json").read_text())["top1"] is not None
        # submitit's own logs and the trainer's stdout/stderr are all in the run dir
        assert list((run_dir / "submitit").glob("*_log.out")) and (run_dir / "stdout.log").is_file()
    after = _summary_mtimes(work)
    assert {k: after[k] for k in before} == before


@pytest.mark.timeout(300)
def test_failing_run_is_retried_reported_and_blocks_its_dependents(tmp_path):
    plan = tmp_path / "plan.csv"
    assert CliRunner().invoke(sweep_main, ["plan", "--grid", "smoke", "--out", str(plan)]).exit_code == 0
    (tmp_path / "data").write_text("a file where the synthetic data folder goes")
    r = CliRunner().invoke(sweep_main, ["run", str(plan), "--attempts", "2", "--only", "beton_inat-mini-a_train"])
    assert r.exit_code != 0
    assert "attempt 2 failed" in r.output and "data_synthetic: FAILED after 2 attempts" in r.output
    assert "beton_inat-mini-a_train: skipped, needs data_synthetic" in r.output
    assert "1 failed, 1 blocked" in r.output
    r = CliRunner().invoke(sweep_main, ["status", str(plan)])
    assert "failed   data_synthetic, 2 attempts" in r.output and "is a file" in r.output

    # A permanent failure: write-beton records an input error (an empty data folder); it is
    # tried once, not --attempts times, and blocks the run that needs it.
    (tmp_path / "data").unlink()
    (tmp_path / "data" / "inat2021").mkdir(parents=True)
    r = CliRunner().invoke(sweep_main, ["run", str(plan), "--attempts", "3", "--only", "scratch_s0"])
    assert r.exit_code != 0
    assert "attempt 1 failed" in r.output and "attempt 2 failed" not in r.output
    assert "input (a config error or bad input" in r.output and "not tried again" in r.output
    assert "scratch_s0: skipped, needs beton_inat-mini-a_" in r.output
    st = read_state(next(row for row in read_plan(plan) if row.run_id == "beton_inat-mini-a_train"))
    assert st["attempt"] == 1 and st["error_kind"] == "input" and st["permanent"] is True
    r = CliRunner().invoke(sweep_main, ["status", str(plan)])
    assert "failed   beton_inat-mini-a_train, 1 attempts (input, not retried: " in r.output


@pytest.mark.timeout(180)
def test_a_full_disk_is_a_permanent_failure_not_retried(inat_dir, small_disk):
    """write-beton refuses a 2 MB filesystem for a 4 MB beton and records disk_full: the sweep
    tries once, not --attempts times, and keeps the line for `status`."""
    from ffcv_inat.sweep.plan import PlanRow
    from ffcv_inat.sweep.state import row_status

    disk = small_disk(2)
    row = PlanRow(
        "beton_inat-mini-a_train",
        "beton",
        split="train",
        inputs={"data_dir": str(inat_dir)},
        options={"dataset": "inat-mini-a", "split": "train", "workers": 1},
        outputs=str(disk.path / "betons" / "inat_mini_a_train.beton"),
    )
    lines: list[str] = []
    res = run_local([row], attempts=3, echo=lines.append)
    assert res.failed == [row.run_id] and not any("attempt 2" in ln for ln in lines)
    st = read_state(row)
    assert st["attempt"] == 1 and st["error_kind"] == "disk_full" and st["permanent"] is True
    assert st["error"].startswith(f"{row.outputs}: not enough room (needs ≈ 4.2 MB: ")
    assert row_status(row).detail == f"disk_full, not retried: {st['error']}"
    assert not Path(row.outputs).exists()
