"""The Python that bench/device_run.sh's steps run, on CPU with tiny sizes: the data step's
synthetic beton (`python -m ffcv_inat.bench.synthetic_beton`) and the train step's figures
of a run (`python -m ffcv_inat.bench.train_throughput`)."""
import json

import pytest
from click.testing import CliRunner

from ffcv_inat import UserError
from ffcv_inat.bench import synthetic_beton, train_throughput
from ffcv_inat.beton import read_manifest


def invoke(main, *args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.timeout(120)
def test_synthetic_beton_makes_the_images_and_their_beton(tmp_path):
    out = tmp_path / "work"
    r = invoke(synthetic_beton.main, out, "--classes", 3, "--per-class", 2, "--size", 32, "--seed", 1)
    assert r.exit_code == 0, r.output
    images, beton = synthetic_beton.synthetic_paths(out)
    assert images == out / "imagenet" / "train" and beton == out / "train.beton"
    folders = sorted(p.name for p in images.iterdir())
    assert len(folders) == 3 and all(f.startswith("n") for f in folders)  # real wnids
    assert all(len(list((images / f).iterdir())) == 2 for f in folders)
    m = read_manifest(beton)
    assert m.num_images == 6 and m.num_classes == 3 and m.dataset == "imagenet"
    assert "made 6 images of 32x32 px" in r.output and "6 images, 3 classes" in r.output
    # made once: a second call refuses rather than mixing two sets of images
    r = invoke(synthetic_beton.main, out, "--classes", 3, "--per-class", 2, "--size", 32)
    assert r.exit_code == 1 and "exists: remove it" in r.output


@pytest.mark.timeout(60)
@pytest.mark.parametrize("option, value, message", [
    ("--classes", 0, "--classes must be at least 1"),
    ("--size", 8, "--size must be at least 16"),
])
def test_synthetic_beton_bad_sizes(tmp_path, option, value, message):
    r = invoke(synthetic_beton.main, tmp_path / "w", option, value)
    assert r.exit_code == 1 and message in r.output
    assert not (tmp_path / "w").exists()


def _run_dir(tmp_path, epochs, summary=True):
    """A run dir as ffcv-train writes it: log.jsonl (one line per epoch) and summary.json."""
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"epoch": e + 1, "epoch_seconds": s, "train_images_per_second": 3840 / s, "images": 3840, "steps": 15}
             for e, s in enumerate(epochs)]
    (run / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if summary:
        (run / "summary.json").write_text(json.dumps({
            "recipe": "pretrain_90ep.yaml", "top1": None, "device": "NVIDIA H100 80GB HBM3", "precision": "bf16",
            "compile": True, "channels_last": True, "batch_size": 256, "wall_seconds": 99.0, "peak_gpu_memory_mb": 20480.5}))
    return run


@pytest.mark.timeout(60)
def test_train_throughput_skips_the_first_epoch(tmp_path):
    # epoch 1 pays for compilation; the steady figure is over epochs 2..4: 3840/s for s in 2, 1, 4
    run = _run_dir(tmp_path, [30.0, 2.0, 1.0, 4.0])
    r = train_throughput.train_throughput(run, "compile=true")
    assert r["epochs"] == 4 and r["finished"] and r["epoch_seconds"] == [30.0, 2.0, 1.0, 4.0]
    assert r["steady_images_per_second"] == pytest.approx(1920.0)
    assert r["steady_images_per_second_min"] == pytest.approx(960.0)
    assert r["steady_images_per_second_max"] == pytest.approx(3840.0)
    assert r["peak_gpu_memory_mb"] == 20480.5 and r["device"] == "NVIDIA H100 80GB HBM3" and r["compile"] is True
    text = train_throughput.describe(r)
    assert "compile=true: 4 epochs;" in text and "median 1,920 (min 960, max 3,840)" in text
    assert "peak GPU memory 20,480 MiB" in text

    rows = tmp_path / "rows.jsonl"
    for _ in range(2):
        res = invoke(train_throughput.main, run, "--label", "compile=true", "--rows", rows)
        assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in rows.read_text().splitlines()]
    assert len(records) == 2 and records[0]["label"] == "compile=true" and records[0]["epochs"] == 4


@pytest.mark.timeout(60)
def test_train_throughput_of_a_stopped_or_missing_run(tmp_path):
    # stopped during epoch 2 (timeout): no summary.json, one logged epoch, no steady figure
    run = _run_dir(tmp_path, [30.0], summary=False)
    r = train_throughput.train_throughput(run)
    assert r["epochs"] == 1 and not r["finished"] and r["steady_images_per_second"] is None
    assert r["peak_gpu_memory_mb"] is None and r["device"] is None
    text = train_throughput.describe(r)
    assert "(run stopped before its end)" in text and "only one epoch logged" in text
    with pytest.raises(UserError, match="no epoch logged"):
        train_throughput.train_throughput(tmp_path / "nowhere")
    res = invoke(train_throughput.main, tmp_path / "nowhere")
    assert res.exit_code == 1 and "no epoch logged" in res.output
