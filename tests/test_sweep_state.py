"""Run states from files: a corrupt or partial summary.json is "not done" for `ffcv-sweep`
exactly as for `ffcv-analyze` (one reader, rundir.read_summary), reported once, never an abort."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ffcv_inat.analyze.table import find_run_dirs
from ffcv_inat.bench.machine import environment
from ffcv_inat.bench.results import RESULTS_ENV, append_rows, make_row
from ffcv_inat.rundir import SUMMARY, read_summary
from ffcv_inat.sweep.cli import main as sweep_main
from ffcv_inat.sweep.plan import read_plan
from ffcv_inat.sweep.state import is_complete, plan_status, row_status

pytestmark = pytest.mark.timeout(60)

BAD_SUMMARIES = {
    "truncated": '{"top1": 0.5, "top5": 0.',  # cut short by a copy
    "empty": "",
    "not_an_object": "[0.5]",
    "partial": json.dumps({"recipe": "x.yaml", "epochs": 3}),  # no final metrics
}


@pytest.fixture()
def smoke_plan(tmp_path):
    plan = tmp_path / "plan.csv"
    r = CliRunner().invoke(sweep_main, ["plan", "--grid", "smoke", "--out", str(plan)])
    assert r.exit_code == 0, r.output
    return plan, {row.run_id: row for row in read_plan(plan)}


@pytest.mark.parametrize("kind", sorted(BAD_SUMMARIES))
def test_bad_summary_is_not_done_and_reported_once(kind, tmp_path, capsys):
    run = tmp_path / kind
    run.mkdir()
    assert read_summary(run) is None and capsys.readouterr().err == ""  # no file: silently not done
    (run / SUMMARY).write_text(BAD_SUMMARIES[kind])
    for _ in range(3):
        assert read_summary(run) is None
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and str(run / SUMMARY) in err[0] and "not done" in err[0], err
    (run / SUMMARY).write_text(json.dumps({"top1": 0.25}))
    assert read_summary(run) == {"top1": 0.25}


def test_status_and_analysis_agree_on_a_corrupt_summary(smoke_plan, tmp_path, capsys):
    plan, rows = smoke_plan
    good, bad = rows["scratch_s0"], rows["finetune_R-8-s0"]
    for row, text in ((good, json.dumps({"top1": 0.3, "top5": 0.8})), (bad, BAD_SUMMARIES["truncated"])):
        Path(row.outputs).mkdir(parents=True)
        (Path(row.outputs) / SUMMARY).write_text(text)
    assert is_complete(good) and not is_complete(bad)
    assert row_status(bad).status == "pending"
    assert [s.row.run_id for s in plan_status(list(rows.values())) if s.status == "done"] == ["scratch_s0"]
    assert find_run_dirs(tmp_path / "runs") == [Path(good.outputs)]  # ffcv-analyze's view: the same
    err = capsys.readouterr().err
    assert err.count(str(Path(bad.outputs) / SUMMARY)) == 1, err  # once, however many readers asked


def test_status_command_reports_a_corrupt_summary_once_and_carries_on(smoke_plan):
    plan, rows = smoke_plan
    run = Path(rows["pretrain_R-8-s0"].outputs)
    run.mkdir(parents=True)
    (run / SUMMARY).write_text(BAD_SUMMARIES["partial"])
    r = CliRunner().invoke(sweep_main, ["status", str(plan), "--all"])
    assert r.exit_code == 0, r.output
    assert r.stderr.count(str(run / SUMMARY)) == 1 and "lacks top1" in r.stderr
    assert "pending  pretrain_R-8-s0" in r.stdout
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("pretrain"))
    assert line.split()[1:] == ["0", "0", "0", "0", "2", "2"]


def test_status_shows_a_running_runs_epoch_and_eta_and_the_grids_time_left(smoke_plan, tmp_path, monkeypatch):
    """A pretraining finished in 100 s; a finetune running (this process stands for it) after 1
    of its 4 epochs in 30 s wall: it shows epoch 1/4, its speed and 1:30 to go; the grid counts
    that, the other pretraining's 100 s (measured on its kind), and names the kinds not yet measured."""
    import os

    from ffcv_inat.sweep.state import write_state

    plan, rows = smoke_plan
    done = Path(rows["pretrain_all-s0"].outputs)
    done.mkdir(parents=True)
    (done / SUMMARY).write_text(json.dumps({"top1": 0.5, "wall_seconds": 100.0}))
    ft = rows["finetune_R-8-s0"]
    Path(ft.outputs).mkdir(parents=True)
    record = {"epoch": 1, "train_images_per_second": 1234.0, "wall_seconds": 30.0}
    (Path(ft.outputs) / "log.jsonl").write_text(json.dumps(record) + "\n")
    write_state(ft, status="running", pid=os.getpid(), attempt=1)
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "none.csv"))  # no bench results: nothing to predict from
    r = CliRunner().invoke(sweep_main, ["status", str(plan)])
    assert r.exit_code == 0, r.output
    assert f"running  finetune_R-8-s0: epoch 1/4, 1,234 img/s, ETA 1:30 (pid {os.getpid()})" in r.output
    trains = [row for row in rows.values() if row.kind in ("pretrain", "finetune", "linear", "scratch")]
    assert (
        f"grid: {len(trains) - 1} training runs left; ≈ 3:10 one at a time, from finished runs' mean wall time "
        "(pretrain 1:40); not counted, no finetune/linear/scratch run finished yet: 1 finetune, 3 linear, 1 scratch "
        f"(no prediction: no results file at {tmp_path / 'none.csv'}: run a benchmark first (or pass --results))"
    ) in r.output
    # With a measured rate at the runs' resolution, ffcv-bench cost's prediction prices the rest:
    # 4 epochs of the assumed 269,400 iNat-Mini-A images (finetune, scratch) or 509,904 ImageNet-A
    # images (each probe) at 1,000 img/s, beside the 190 s measured and running.
    results = tmp_path / "results.csv"
    append_rows(
        results,
        [
            make_row(
                "epoch",
                "trainer",
                "c",
                {"recipe": "x.yaml"},
                env=environment(),
                res=32,
                batch=16,
                images_per_second=1000.0,
            )
        ],
    )
    monkeypatch.setenv(RESULTS_ENV, str(results))
    r = CliRunner().invoke(sweep_main, ["status", str(plan)])
    assert r.exit_code == 0, r.output
    grid = next(line for line in r.output.splitlines() if line.startswith("grid: "))
    assert grid.startswith(f"grid: {len(trains) - 1} training runs left; ≈ 2:21:04 one at a time, from finished ")
    assert "; predicted by ffcv-bench cost for kinds with none finished (finetune 17:58, linear 1:41:59, " in grid
    assert "scratch 17:58; priced on " in grid and "not counted" not in grid
