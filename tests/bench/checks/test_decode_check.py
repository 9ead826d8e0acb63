"""The bench side of the GPU data path on CPU: `ffcv-bench loader/epoch --decode`, their decode
verdict, the report's, the CPU-time figures, `ffcv-bench decode-check`, and this
machine's ceiling on the beton's stored JPEGs (bench/throughput/ceiling.py, the device rate with the CPU in
the device's place).

There is no GPU here: the GPU path's code runs with device "cpu" under the tests' switch
$FFCV_INAT_GPU_PATH_ON_CPU=1 (the `gpu_path_on_cpu` fixture), as the data-path tests run it;
without it, asking for it is a one-line error. Real ffcv, torchvision and trainer; speed is never asserted.
"""

import csv
import json
import os
import time

import pytest
import torch
from click.testing import CliRunner

from ffcv_inat.bench.checks import decode as decode_check
from ffcv_inat.bench.throughput.ceiling import (
    _decode_chunk,
    cpu_ceiling,
    device_decode_rate,
    finish_ceiling,
    open_ceiling,
    timed_rounds,
)
from ffcv_inat.bench.data.stored_jpegs import read_stored_jpegs
from ffcv_inat.loader.crops import crop_box
from ffcv_inat.bench.cli import main
from ffcv_inat.bench.data.image_folder import list_image_folder, write_source_beton
from ffcv_inat.bench.throughput.usage import cpu_seconds, parse_proc_stat
from ffcv_inat.bench.report import decode_conclusion, loader_table, results_table
from ffcv_inat.bench.machine import environment
from ffcv_inat.bench.results import append_rows, make_row, read_results
from ffcv_inat.classes import imagenet_classes
from ffcv_inat.synthetic import make_imagenet
from helpers.errors import assert_one_line_error


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """16 images of 4 ImageNet classes and their beton."""
    root = tmp_path_factory.mktemp("decode")
    make_imagenet(
        root / "imagenet", train_per_class=4, val_per_class=0, size=40, wnids=[c.wnid for c in imagenet_classes()[:4]]
    )
    images = root / "imagenet" / "train"
    beton = root / "train.beton"
    write_source_beton(list_image_folder(images), beton, workers=1)
    return images, beton


def invoke(cli, *args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ ffcv-bench loader / epoch --decode


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args, fragments",
    [
        # the loaders' own rule and words (loaders.resolve_decode), not restated by the bench
        (["--decode", "gpu"], ["data.decode: gpu needs a CUDA device, and this run's device is cpu"]),
        (["--decode", "cpu,gpu"], ["data.decode: gpu needs a CUDA device"]),
        (["--decode", "cpu", "--device", "cuda"], ["--device cuda: no CUDA GPU is visible"]),
        (["--decode", "cpu,tpu"], ["--decode takes cpu, gpu, auto (comma-separated or repeated), got 'tpu'"]),
    ],
)
def test_loader_refuses_the_gpu_path_without_cuda(data, tmp_path, args, fragments):
    images, beton = data
    r = invoke(
        main, "loader", "--images", images, "--beton", beton, "--batch", 4, *args, "--results", tmp_path / "r.csv"
    )
    assert_one_line_error(r, *fragments)
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.timeout(60)
def test_epoch_refuses_the_gpu_path_without_cuda(data, tmp_path):
    _, beton = data
    r = invoke(
        main,
        "epoch",
        "--recipe",
        "smoke_cpu.yaml",
        "--train",
        beton,
        "--decode",
        "cpu",
        "--decode",
        "gpu",
        "--results",
        tmp_path / "r.csv",
    )
    assert_one_line_error(r, "data.decode: gpu needs a CUDA device")
    assert not (tmp_path / "r.csv").exists()  # checked before the first trainer run


@pytest.mark.timeout(180)
def test_loader_times_each_decode_path(data, tmp_path, gpu_path_on_cpu):
    images, beton = data
    out = tmp_path / "r.csv"
    r = invoke(
        main,
        "loader",
        "--images",
        images,
        "--beton",
        beton,
        "--res",
        32,
        "--batch",
        4,
        "--workers",
        1,
        "--epochs",
        2,
        "--warmup",
        1,
        "--min-seconds",
        0,
        "--no-ceiling",
        "--decode",
        "cpu,gpu",
        "--decode",
        "auto",
        "--pipeline",
        "ffcv",
        "--pipeline",
        "pytorch",
        "--results",
        out,
    )
    assert r.exit_code == 0, r.output
    rows = read_rows(out)
    # auto is cpu here (no CUDA), so each path runs once
    assert [(row["pipeline"], json.loads(row["settings"]).get("decode")) for row in rows] == [
        ("ffcv", "cpu"),
        ("ffcv", "gpu"),
        ("pytorch", None),
    ]
    cpu, gpu, torch_ = (json.loads(row["settings"]) for row in rows)
    # the GPU path on the CPU: normalised float batches of the same shape, on the device it ran on
    assert cpu["batch_shape"] == gpu["batch_shape"] == torch_["batch_shape"] == [4, 3, 32, 32]
    assert cpu["device"] == gpu["device"] == "cpu"
    # every epoch run (warm-up rounds until settled, then 2 measured) of 16 baseline JPEGs: the batched call
    epochs = gpu["warmup_rounds"] + 2
    assert 1 <= gpu["warmup_rounds"] <= 4 and gpu["epochs_per_round"] == 1
    assert gpu["decode_counts"] == {"batched": 16 * epochs, "one_by_one": 0, "cpu": 0, "raw": 0}
    assert "decode_counts" not in cpu and gpu.get("nvjpeg_backend") is None  # no CUDA device: not asked
    assert float(rows[1]["ratio"]) > 0
    assert "ffcv, cpu decode" in r.output and "ffcv, gpu decode" in r.output and "ffcv gpu / pytorch" in r.output
    assert (
        f"GPU path at res 32, samples of every epoch run: {16 * epochs} in the batched device call, 0 one by one "
        "on the device"
    ) in r.output
    verdict = [line for line in r.output.splitlines() if line.startswith("decode verdict: ")]
    assert len(verdict) == 1 and "by loader throughput alone (no end-to-end figures)" in verdict[0]
    assert "res 32: cpu " in verdict[0] and " vs gpu " in verdict[0]
    assert "target >=" not in r.output  # no figures at 224 px


@pytest.mark.timeout(300)
def test_epoch_runs_the_trainer_per_decode_path(data, tmp_path, gpu_path_on_cpu):
    _, beton = data
    out = tmp_path / "r.csv"
    # whole epochs of 4 steps of 4 images
    r = invoke(
        main,
        "epoch",
        "--recipe",
        "smoke_cpu.yaml",
        "--train",
        beton,
        "--epochs",
        1,
        "--warmup",
        0,
        "--set",
        "data.batch_size=4",
        "--set",
        "data.workers=1",
        "--decode",
        "cpu,gpu",
        "--out",
        tmp_path / "runs",
        "--results",
        out,
    )
    assert r.exit_code == 0, r.output
    rows = read_rows(out)
    assert [json.loads(row["settings"])["decode"] for row in rows] == ["cpu", "gpu"]
    assert rows[0]["timestamp"] == rows[1]["timestamp"]  # one run: the report groups its rows
    cpu, gpu = (json.loads(row["settings"]) for row in rows)
    assert cpu["model_only_images_per_second"] == gpu["model_only_images_per_second"] > 0  # timed once
    # the loader alone: 1 warm-up + 1 measured epoch of 16 images
    assert gpu["loader_only_decode_counts"]["batched"] == 32 and "loader_only_decode_counts" not in cpu
    assert all(row["verdict"] and row["extrapolated"] == "False" for row in rows)
    # each path's trainer run kept in its own run dir
    for d in ("cpu", "gpu"):
        summary = json.loads((tmp_path / "runs" / f"decode-{d}" / "summary.json").read_text())
        assert summary["decode"] == d
    assert "crop center, decode cpu" in r.output and "crop center, decode gpu" in r.output
    assert "decode verdict: " in r.output and "by end-to-end throughput" in r.output


# ------------------------------------------------------------------ report


def _row(bench, pipeline, res, ips, env, **settings):
    return make_row(
        bench,
        pipeline,
        "c",
        settings,
        env=env,
        res=res,
        batch=256,
        workers=16,
        images_per_second=ips,
        images_per_second_min=ips - 10,
        images_per_second_max=ips + 10,
        runs=2,
    )


@pytest.mark.timeout(60)
def test_report_says_which_decode_path_to_use(tmp_path):
    gpu = dict(environment(), gpu="NVIDIA H100 80GB HBM3", gpu_count=1, host="gpuhost", cpu_count=16)
    loader = [
        _row("loader", "ffcv", 224, 3400.0, gpu, crop="seeded", decode="cpu", cores_used=15.2),
        _row(
            "loader",
            "ffcv",
            224,
            9000.0,
            gpu,
            crop="seeded",
            decode="gpu",
            cores_used=1.7,
            decode_counts={"batched": 100, "one_by_one": 0, "cpu": 0, "raw": 0},
        ),
        _row("loader", "pytorch", 224, 1800.0, gpu, cores_used=15.9),
    ]
    assert decode_conclusion(loader) == [
        "decode verdict: use decode gpu on this machine: by loader throughput alone (no end-to-end figures) it is "
        "faster at res 224 (res 224: cpu 3,400 img/s on 15.2 cores vs gpu 9,000 img/s on 1.7 cores = gpu 2.65x)",
        "target >= 8,000 img/s at 224 px on <= 2 CPU cores: cpu decode misses it (cpu 3,400 img/s on 15.2 cores); "
        "gpu decode meets it (gpu 9,000 img/s on 1.7 cores)",
    ]
    table = loader_table(loader)
    assert "ffcv, cpu decode" in table and "ffcv, gpu decode" in table and "on 1.7 cores" in table
    # end to end decides when epoch rows compare the paths, whatever the loader says
    later = dict(gpu, timestamp="2099-01-01T00:00:00+00:00")
    epoch = [
        _row("epoch", "trainer", 224, 2550.0, later, decode="cpu"),
        _row("epoch", "trainer", 224, 2500.0, later, decode="gpu"),
    ]
    lines = decode_conclusion(loader + epoch)
    assert lines[0] == (
        "decode verdict: either decode path: by end-to-end throughput they are within 3% (noise) "
        "(res 224: cpu 2,550 img/s vs gpu 2,500 img/s = cpu 1.02x)"
    )
    path = tmp_path / "r.csv"
    cpu_only = dict(environment(), gpu="none", gpu_count=0, host="vm", cpu_count=2)
    append_rows(path, loader + epoch + [_row("loader", "ffcv", 224, 400.0, cpu_only, crop="seeded")])
    text = results_table(read_results(path))
    assert " decode " in text.splitlines()[0]  # a column of its own
    assert (
        "NVIDIA H100 80GB HBM3, newest runs with the GPU decode path: decode verdict: either decode path: by "
        "end-to-end throughput"
    ) in text
    assert "NVIDIA H100 80GB HBM3, newest runs with the GPU decode path: target >= 8,000 img/s" in text
    assert "vm CPU x2, newest" not in text  # that machine never ran the GPU path


# ------------------------------------------------------------------ CPU time of the loader process


def test_parse_proc_stat_counts_fields_after_the_command_name():
    # a command name with spaces and parentheses; utime 1500 + stime 250 ticks
    fields = ["S", "41"] + ["0"] * 9 + ["1500", "250"] + ["0"] * 30
    assert parse_proc_stat("1234 (my (odd) name) " + " ".join(fields)) == (1234, 41, 1750)


@pytest.mark.timeout(60)
def test_cpu_seconds_counts_this_process_and_its_children():
    import subprocess
    import sys

    before = cpu_seconds()
    end = time.process_time() + 0.3
    while time.process_time() < end:  # this process: 0.3 s of CPU
        pass
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass\ntime.sleep(30)",
        ]
    )
    try:
        deadline = time.time() + 20
        while cpu_seconds() - before < 0.75 and time.time() < deadline:  # the child's 0.5 s counts while it lives
            time.sleep(0.1)
        assert cpu_seconds() - before >= 0.75
    finally:
        child.kill()
        child.wait()


# ------------------------------------------------------------------ decode_check


def test_pixel_diff_in_levels():
    a = torch.zeros(3, 2, 2, dtype=torch.uint8)
    b = a.clone()
    b[0, 0, 0] = 4
    d = decode_check.pixel_diff(b, a)
    assert (d.images, d.size_mismatches, d.values, d.max) == (1, 0, 12, 4.0) and d.mean == pytest.approx(4 / 12)
    assert decode_check.pixel_diff(torch.zeros(3, 2, 3), a) == decode_check.PixelDiff(size_mismatches=1)
    # normalised batches: a difference of 0.1 std in channel 1 is 0.1 x 57.12 levels
    scale = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[:, 1] = 0.1
    d = decode_check.pixel_diff(y, x, images=2, scale=scale)
    assert d.images == 2 and d.max == pytest.approx(5.712, rel=1e-4)
    total = d + decode_check.PixelDiff(size_mismatches=1)
    assert (total.images, total.size_mismatches, total.max) == (2, 1, d.max)


def _report(**kw):
    base = dict(
        beton="train.beton",
        device="cuda",
        machine="gpuhost",
        samples=1000,
        beton_samples=4000,
        kinds={"raw": 0, "jpeg (batched)": 1000, "jpeg (other)": 0},
        batch=256,
        res=224,
    )
    return decode_check.CheckReport(**{**base, **kw})


def test_decode_check_gates_on_the_whole_path_and_the_hazard_only():
    PD = decode_check.PixelDiff
    ok = _report(stored_batched=PD(1000, 0, 100, 150.0, 3.0), hazard=decode_check.HazardResult(50, 200, 256, 0, 0, 0))
    assert decode_check.failures(ok) == []
    assert "result: PASS" in decode_check.format_report(ok)
    assert "0 corrupted rounds (0 wrong sums, 0 wrong images)" in decode_check.format_report(ok)
    # (a) over the limit is reported, not judged: nvJPEG's chroma upsampling differs from libjpeg-turbo's
    filters = _report(stored_one_by_one=PD(1000, 0, 100, 250.0, 9.0), stored_batched=PD(999, 1, 10, 30.0, 9.0))
    assert decode_check.failures(filters) == []
    assert "mean 2.500 levels" in decode_check.format_report(filters)
    bad = _report(path=PD(999, 1, 100, 250.0, 9.0), hazard=decode_check.HazardResult(50, 200, 256, 2, 3, 0))
    assert decode_check.failures(bad) == [
        "(b) whole path: mean difference 2.500 levels > 2",
        "(b) whole path: 1 images of another size",
        "(c) stream hazard: 2 of 50 rounds corrupted",
    ]
    assert decode_check.format_report(bad).splitlines()[-1].startswith("result: FAIL: (b) whole path")


@pytest.mark.timeout(120)
def test_decode_check_keeps_its_report_before_training_and_uses_one_device(data, monkeypatch):
    _, beton = data
    devices, kept = [], []
    real = decode_check.stored_jpeg_diffs

    def recording(rows, headers, device):
        devices.append(device)
        return real(rows, headers, device)

    monkeypatch.setattr(decode_check, "stored_jpeg_diffs", recording)
    settings = decode_check.CheckSettings(samples=8, batch=4, res=32, workers=1, train_steps=0)
    report = decode_check.run_check(beton, torch.device("cpu"), settings, echo=lambda m: None, keep=kept.append)
    assert devices == [torch.device("cpu")] * 2  # the one device object run_check was given, indexed
    # written before (d), then after it: a check stopped during (d) keeps (a)-(c)
    assert [k.training_skipped for k in kept] == [decode_check.TRAINING_PENDING, report.training_skipped]
    assert "(d) training: not run (not finished: the check was stopped while (d) ran)" in decode_check.format_report(
        kept[0]
    )
    assert kept[0].path == report.path and report.path.images == 8


@pytest.mark.timeout(240)
def test_decode_check_self_check_on_cpu(data, tmp_path, gpu_path_on_cpu):
    _, beton = data
    out = tmp_path / "check.txt"
    r = invoke(
        main,
        "decode-check",
        beton,
        "--out",
        out,
        "--device",
        "cpu",
        "--images",
        10,
        "--batch",
        4,
        "--res",
        32,
        "--workers",
        1,
        "--train-steps",
        2,
        "--train-batch",
        4,
        "--recipe",
        "smoke_cpu.yaml",
    )
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert text.strip() in r.output
    assert "first 10 of 16 samples (0 raw, 10 jpeg (batched), 0 jpeg (other)), batches of 4" in text
    assert "device cpu: a self-check of this script" in text
    # the CPU against itself: no difference, every image decoded in the batched call
    assert "batched (one call per batch): max 0.00, mean 0.000 levels over 10 images; 0 size mismatches" in text
    assert "the device run decoded 10 in the batched device call" in text
    assert "(c) stream hazard: not run (needs CUDA" in text
    assert "(d) training, 2 steps of batch 4 at 32 px (smoke_cpu.yaml, seed 0): mean loss " in text
    assert "with decode cpu" in text and "with decode gpu" in text
    assert text.strip().splitlines()[-1].startswith("result: PASS")


@pytest.mark.timeout(60)
def test_decode_check_bad_arguments(data, tmp_path):
    _, beton = data
    assert_one_line_error(
        invoke(main, "decode-check", beton, "--out", tmp_path / "c.txt"), "--device cuda: no CUDA GPU is visible"
    )
    assert_one_line_error(
        invoke(main, "decode-check", beton, "--out", tmp_path / "no" / "c.txt", "--device", "cpu"),
        "--out: folder does not exist",
    )
    assert_one_line_error(
        invoke(main, "decode-check", beton, "--out", tmp_path / "c.txt", "--device", "cpu", "--images", 0),
        "--images must be at least 1",
    )
    assert_one_line_error(
        invoke(main, "decode-check", tmp_path / "missing.beton", "--out", tmp_path / "c.txt", "--device", "cpu"),
        "missing.beton",
    )
    assert not (tmp_path / "c.txt").exists()
    # without $FFCV_INAT_GPU_PATH_ON_CPU the GPU path's training comparison cannot run on the CPU: it says why
    r = invoke(
        main,
        "decode-check",
        beton,
        "--out",
        tmp_path / "c.txt",
        "--device",
        "cpu",
        "--batch",
        8,
        "--res",
        32,
        "--workers",
        1,
    )
    assert r.exit_code == 0, r.output
    assert "(d) training: not run (data.decode: gpu needs a CUDA device" in (tmp_path / "c.txt").read_text()
    assert os.path.getsize(tmp_path / "c.txt") > 0


# ------------------------------------------- this machine's ceiling (bench/throughput/ceiling.py)


@pytest.mark.timeout(120)
def test_the_ceiling_times_the_betons_own_jpegs_with_the_seeded_boxes(data):
    _, beton = data
    jpegs = read_stored_jpegs(beton, 100, workers=1)
    assert len(jpegs) == 16 and jpegs.raw_skipped == 0 and jpegs.sizes.tolist() == [[40, 40]] * 16
    assert all(bytes(d[:2]) == b"\xff\xd8" for d in jpegs.datas)  # JPEG files, as stored
    # the boxes and flips the seeded decoder cuts in epoch 0 (seed 0) of each sample
    for i, (h, w) in enumerate(jpegs.sizes.tolist()):
        assert jpegs.boxes[i].tolist() == [int(v) for v in crop_box(0, 0, i, h, w)]
    _decode_chunk(jpegs, range(len(jpegs)), 16)  # every box lies inside its image: no error from libffcv
    c = cpu_ceiling(jpegs, workers=2, resolutions=[16, 24], rounds=2, min_seconds=0)
    assert (c.workers, c.images) == (2, 16) and set(c.decode_resize) == {16, 24}
    assert c.decode.n == 4 and all(s.n == 2 for s in c.decode_resize.values())  # decode alone beside each
    assert all(s.min <= s.median <= s.max for s in (c.decode, *c.decode_resize.values()))
    # the GPU path's counterpart, here with torchvision on the CPU in the device's place
    assert device_decode_rate(jpegs, "cpu", batch=4, rounds=1, min_seconds=0).n == 1
    with open_ceiling(beton, 1, min_seconds=0, echo=lambda m: None) as rounds:
        rounds.round(16)
        c = finish_ceiling(rounds, gpu_device=torch.device("cpu"))
    assert c.images == 16 and c.decode.n == 1 and set(c.decode_resize) == {16}
    assert c.device_decode is None  # no CUDA: no device figure


def test_timed_rounds_go_over_the_images_until_the_round_is_long_enough():
    passes = []

    def one_pass():
        passes.append(1)
        return 10

    s = timed_rounds(one_pass, rounds=2, min_seconds=0)
    assert len(passes) == 3 and s.n == 2  # one uncounted pass, then one pass per round
