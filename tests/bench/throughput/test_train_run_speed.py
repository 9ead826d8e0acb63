"""`ffcv-bench train-run`: the speed an ffcv-train run logged (bench/gpu/device_run.sh's train
step), from run dirs written here as ffcv-train writes them."""

import json

import pytest
from click.testing import CliRunner

from ffcv_inat import UserError
from ffcv_inat.bench.cli import main
from ffcv_inat.bench.throughput.train_run import describe, train_throughput


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _run_dir(tmp_path, epochs, summary=True):
    """A run dir as ffcv-train writes it: log.jsonl (one line per epoch) and summary.json."""
    run = tmp_path / "run"
    run.mkdir()
    lines = [
        {"epoch": e + 1, "epoch_seconds": s, "train_images_per_second": 3840 / s, "images": 3840, "steps": 15}
        for e, s in enumerate(epochs)
    ]
    (run / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if summary:
        (run / "summary.json").write_text(
            json.dumps(
                {
                    "recipe": "pretrain_90ep.yaml",
                    "top1": None,
                    "device": "NVIDIA H100 80GB HBM3",
                    "precision": "bf16",
                    "compile": True,
                    "channels_last": True,
                    "batch_size": 256,
                    "wall_seconds": 99.0,
                    "peak_gpu_memory_mb": 20480.5,
                }
            )
        )
    return run


@pytest.mark.timeout(60)
def test_train_throughput_skips_the_first_epoch(tmp_path):
    # epoch 1 pays for compilation; the steady figure is over epochs 2..4: 3840/s for s in 2, 1, 4
    run = _run_dir(tmp_path, [30.0, 2.0, 1.0, 4.0])
    r = train_throughput(run, "compile=true")
    assert r["epochs"] == 4 and r["finished"] and r["epoch_seconds"] == [30.0, 2.0, 1.0, 4.0]
    assert r["steady_images_per_second"] == pytest.approx(1920.0)
    assert r["steady_images_per_second_min"] == pytest.approx(960.0)
    assert r["steady_images_per_second_max"] == pytest.approx(3840.0)
    assert r["peak_gpu_memory_mb"] == 20480.5 and r["device"] == "NVIDIA H100 80GB HBM3" and r["compile"] is True
    text = describe(r)
    assert "compile=true: 4 epochs;" in text and "median 1,920 (min 960, max 3,840)" in text
    assert "peak GPU memory 20,480 MiB" in text

    rows = tmp_path / "rows.jsonl"
    for _ in range(2):
        res = invoke("train-run", run, "--label", "compile=true", "--rows", rows)
        assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in rows.read_text().splitlines()]
    assert len(records) == 2 and records[0]["label"] == "compile=true" and records[0]["epochs"] == 4


@pytest.mark.timeout(60)
def test_train_throughput_of_a_stopped_or_missing_run(tmp_path):
    # stopped during epoch 2 (timeout): no summary.json, one logged epoch, no steady figure
    run = _run_dir(tmp_path, [30.0], summary=False)
    r = train_throughput(run)
    assert r["epochs"] == 1 and not r["finished"] and r["steady_images_per_second"] is None
    assert r["peak_gpu_memory_mb"] is None and r["device"] is None
    text = describe(r)
    assert "(run stopped before its end)" in text and "only one epoch logged" in text
    with pytest.raises(UserError, match="no epoch logged"):
        train_throughput(tmp_path / "nowhere")
    res = invoke("train-run", tmp_path / "nowhere")
    assert res.exit_code == 1 and "no epoch logged" in res.output
