"""A real 2-process DistributedDataParallel run (gloo on CPU) launched by torchrun."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from _train_data import imagenet_a_betons
from ffcv_inat.train.cli import main


@pytest.mark.timeout(280)
def test_torchrun_two_processes_train_and_only_rank0_writes(tmp_path):
    # 3 classes x 5 val images = 15: an odd count, so ffcv's distributed order pads rank 1
    # with a repeat and the evaluation must count every image exactly once.
    train, val = imagenet_a_betons(tmp_path / "data", k=3, train_per_class=24, val_per_class=5)
    run, writes = tmp_path / "run", tmp_path / "writes"
    writes.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).with_name("_rank_writes.py")),
           "--recipe", "smoke_cpu.yaml", "--train", str(train), "--val", str(val), "--out", str(run),
           "--set", "schedule.epochs=1", "--set", "schedule.max_steps_per_epoch=2", "--set", "eval.batch_size=8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK_WRITES_DIR": str(writes)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=260)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("run dir:") == 1  # only rank 0 reports

    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["batch_size"] == 16 and summary["eval_images"] == 15
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["steps"] == 2 and log[0]["images"] == 32  # 2 steps x 8 per rank x 2 ranks

    written = {p.name: p.read_text().split() for p in writes.iterdir()}
    assert set(written) == {"rank0.txt"}, written  # rank 1 moved nothing into place
    assert {Path(p).name for p in written["rank0.txt"]} == {
        "config.yaml", "last.pt", "log.jsonl", "per_class.csv", "summary.json"}

    # The sharded evaluation equals a single-process evaluation of the same checkpoint.
    out = tmp_path / "eval"
    result = CliRunner().invoke(main, ["eval", "--checkpoint", str(run / "checkpoints" / "last.pt"),
                                       "--val", str(val), "--out", str(out), "--batch-size", "8", "--workers", "2"])
    assert result.exit_code == 0, result.output
    single = json.loads((out / "summary.json").read_text())
    assert single["top1"] == summary["top1"] and single["top5"] == summary["top5"]
    with open(out / "per_class.csv") as a, open(run / "per_class.csv") as b:
        assert [r["correct"] for r in csv.DictReader(a)] == [r["correct"] for r in csv.DictReader(b)]
