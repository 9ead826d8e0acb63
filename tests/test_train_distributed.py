"""A real 2-process DistributedDataParallel run (gloo on CPU) launched by torchrun: the session
fixture `torchrun_two_process_run` (tests/conftest.py), started in the background."""

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ffcv_inat.training.cli import main


@pytest.mark.timeout(280)  # the first user waits for the run, if it is still going
def test_torchrun_two_processes_train_and_only_rank0_writes(torchrun_two_process_run, tmp_path):
    val, run, writes = (torchrun_two_process_run[k] for k in ("val", "run_dir", "writes"))
    assert torchrun_two_process_run["stdout"].count("run dir:") == 1  # only rank 0 reports

    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["batch_size"] == 16 and summary["eval_images"] == 15
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["steps"] == 2 and log[0]["images"] == 32  # 2 steps x 8 per rank x 2 ranks

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

    # The sharded evaluation equals a single-process evaluation of the same checkpoint.
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "--checkpoint",
            str(run / "checkpoints" / "last.pt"),
            "--val",
            str(val),
            "--out",
            str(out),
            "--batch-size",
            "8",
            "--workers",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    single = json.loads((out / "summary.json").read_text())
    assert single["top1"] == summary["top1"] and single["top5"] == summary["top5"]
    with open(out / "per_class.csv") as a, open(run / "per_class.csv") as b:
        assert [r["correct"] for r in csv.DictReader(a)] == [r["correct"] for r in csv.DictReader(b)]
