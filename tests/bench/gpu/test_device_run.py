"""bench/gpu/device_run.sh, the prepared GPU run, exercised on CPU with tiny sizes: it makes its
data, runs the steps asked for, logs a failing step without stopping the rest, and leaves
the results CSV, report and log in $OUT. (The subcommands of its steps are tested on their own in
tests/bench/.)"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.device_run import SCRIPT, TINY


def run_script(out, limit: float, **env):
    """Run the script; `limit` (below the test's own timeout) stops it rather than orphaning it."""
    full = dict(os.environ, OUT=str(out), PYTHON=sys.executable, **TINY, **env)
    return subprocess.run(["bash", str(SCRIPT)], env=full, capture_output=True, text=True, cwd="/", timeout=limit)


def named(out, what: str) -> Path:
    """The script's text file `what`, named as bench/results/ names files: <machine>_<date>_<what>."""
    (path,) = out.glob(f"*_{what}")
    machine, date, _ = path.name.split("_", 2)
    assert machine == f"cpu-{os.cpu_count()}core" and len(date) == 10  # no GPU here; YYYY-MM-DD
    return path


@pytest.mark.timeout(280)
def test_steps_run_and_a_failing_step_does_not_stop_the_rest(device_run_script):
    # The run of FAILING_STEPS (tests/helpers/device_run.py), started in the background at the session's
    # first test: "bogus" is no step, the training run gets a recipe that does not exist (so its
    # figures find no epoch) and the sweep a run id that is not in its plan: they fail, and the
    # steps after them still run; the loader bench writes its rows, real photos first. Without
    # CUDA the decode check runs as its self-check (--device cpu) and the decode paths are "cpu" alone.
    p, out = device_run_script["result"], device_run_script["out"]
    assert p.returncode == 1, p.stdout + p.stderr
    assert "[ok] data" in p.stdout and "[ok] decode_check" in p.stdout
    assert "[ok] loader real photos" in p.stdout and "[ok] loader synthetic" in p.stdout
    assert "decode paths: cpu;" in p.stdout
    assert "[failed] unknown step bogus" in p.stdout
    for failed in ("train compile=false", "train compile=false figures", "smoke_sweep run", "smoke_sweep analyze"):
        assert f"[failed rc=1] {failed} after" in p.stdout
    assert "[ok] smoke_sweep plan" in p.stdout and "[ok] smoke_sweep status" in p.stdout
    assert (
        "failed: bogus train compile=false train compile=false figures smoke_sweep run smoke_sweep analyze; "
        "skipped: none"
    ) in p.stdout
    assert "no epoch logged in log.jsonl" in p.stdout  # --show: the figures step prints to stdout too
    log = named(out, "device_run.log").read_text()
    assert "recipe not found: no_such_recipe.yaml" in log and "made 8 images of 48x48 px" in log
    assert "no run 'no_such_run' in the plan" in log and "runs dir not found" in log
    check = named(out, "decode_check.txt").read_text()
    assert check in p.stdout  # --show
    assert "GPU data path check of real.beton: first 8 of 8 samples" in check  # the real photos
    assert "device cpu: a self-check of this script" in check and "result: PASS" in check
    assert "(c) stream hazard: not run (needs CUDA" in check
    assert "(d) training: not run (data.decode: gpu needs a CUDA device" in check  # as on a user's machine
    with (out / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["bench"], r["pipeline"], r["workers"], r["res"]) for r in rows] == [
        ("loader", "ffcv", "1", "32"),
        ("loader", "ffcv", "1", "32"),
        ("loader", "pytorch", "1", "32"),
    ]
    labels = [json.loads(r["settings"])["images_label"] for r in rows]
    assert labels == ["real photos (ajschumacher/imagen)"] + ["synthetic (stripes + noise, 48 px)"] * 2
    assert all("ceiling" in json.loads(r["settings"]) for r in rows)
    assert rows[0]["gpu"] == "none" and rows[0]["ratio"] == "" and float(rows[1]["ratio"]) > 0  # no pytorch beside real
    assert "--decode cpu" in rows[0]["command"]
    assert (out / "loader_throughput.png").is_file() and "ffcv" in named(out, "report.txt").read_text()


@pytest.mark.timeout(60)
def test_no_step_starts_once_the_budget_is_spent(tmp_path):
    p = run_script(tmp_path / "out", 50, BUDGET_S="0", REAL_BETON=str(tmp_path / "none.beton"))
    assert p.returncode == 1
    # the real photos' beton is written before the GPU run: without it, one line says how
    assert (
        f"[failed] data: no real-photo beton at {tmp_path / 'none.beton'}: write it before the GPU run "
        "(ffcv-bench prepare real-photos"
    ) in p.stdout
    # the standing GPU bench: the correctness check before the timings that depend on it
    assert "steps: data decode_check model epoch loader model_compile;" in p.stdout
    for step in (
        "data",
        "decode_check",
        "model --channels-last",
        "epoch",
        "loader synthetic",
        "model --compile --channels-last",
    ):
        assert f"[skipped] {step}:" in p.stdout
    assert "no-channels-last" not in p.stdout  # only with MODEL_LAYOUTS="--channels-last --no-channels-last"
    assert "no results rows were written" in p.stdout


@pytest.mark.timeout(30)
def test_out_is_required(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    p = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=25)
    assert p.returncode != 0 and "set OUT" in p.stderr
