"""bench/device_run.sh, the prepared GPU run, exercised on CPU with tiny sizes: it makes its
data, runs the steps asked for, logs a failing step without stopping the rest, and leaves
the results CSV, report and log in $OUT."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "device_run.sh"
TINY = {"CLASSES": "2", "PER_CLASS": "4", "SIZE": "48", "WORKERS": "1", "BATCH": "4", "LOADER_RES": "32",
        "LOADER_EPOCHS": "1", "MODEL_RES": "64", "MODEL_BATCH": "2", "MODEL_STEPS": "1", "MODEL_WARMUP": "1",
        "MODEL_PRECISION": "fp32"}


def run_script(out, limit: float, **env):
    """Run the script; `limit` (below the test's own timeout) stops it rather than orphaning it."""
    full = dict(os.environ, OUT=str(out), PYTHON=sys.executable, **TINY, **env)
    return subprocess.run(["bash", str(SCRIPT)], env=full, capture_output=True, text=True, cwd="/", timeout=limit)


@pytest.mark.timeout(240)
def test_steps_run_and_a_failing_step_does_not_stop_the_rest(tmp_path):
    out = tmp_path / "out"
    # "bogus" is no step and the epoch bench gets a recipe that does not exist: both fail,
    # and the loader bench after them still runs and writes its rows.
    p = run_script(out, 220, STEPS="data bogus epoch loader", EPOCH_RECIPE="no_such_recipe.yaml")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "[ok] data" in p.stdout and "[ok] loader" in p.stdout
    assert "[failed] unknown step bogus" in p.stdout and "[failed rc=1] epoch" in p.stdout
    assert "failed: bogus epoch; skipped: none" in p.stdout
    log = (out / "device_run.log").read_text()
    assert "recipe not found: no_such_recipe.yaml" in log and "made 8 images of 48x48 px" in log
    with (out / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["bench"], r["pipeline"], r["workers"], r["res"]) for r in rows] == [
        ("loader", "ffcv", "1", "32"), ("loader", "pytorch", "1", "32")]
    assert rows[0]["gpu"] == "none" and float(rows[0]["ratio"]) > 0
    assert (out / "loader_throughput.png").is_file() and "ffcv" in (out / "report.txt").read_text()


@pytest.mark.timeout(60)
def test_no_step_starts_once_the_budget_is_spent(tmp_path):
    p = run_script(tmp_path / "out", 50, BUDGET_S="0")
    assert p.returncode == 1
    for step in ("data", "model --channels-last", "loader", "epoch", "model --compile --no-channels-last"):
        assert f"[skipped] {step}:" in p.stdout
    assert "no results rows were written" in p.stdout


@pytest.mark.timeout(30)
def test_out_is_required(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    p = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=25)
    assert p.returncode != 0 and "set OUT" in p.stderr
