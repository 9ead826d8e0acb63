"""`ffcv-train` and `ffcv-train eval` with `data.decode: gpu`, on the CPU under the tests' switch
($FFCV_INAT_GPU_PATH_ON_CPU=1): a short run learns through the GPU path, its evaluation decodes
the same way and agrees with the run's, and without the switch `gpu` on a CPU is one line and no
run dir. The path's own parts are pinned in tests/test_gpu_data_path.py."""

import json
import math

import pytest
from click.testing import CliRunner

from ffcv_inat.loader import GPU_PATH_ON_CPU
from helpers.train_data import imagenet_a_betons


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    return imagenet_a_betons(tmp_path_factory.mktemp("gpu_path_train"))


def ffcv_train(*args):
    from ffcv_inat.training.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def train_args(betons, out, *extra):
    train, val = betons
    sets = ["schedule.epochs=2", "schedule.step_every=1", "data.augment=true", "data.decode=gpu"]
    return [
        "--recipe",
        "smoke_cpu.yaml",
        "--train",
        train,
        "--val",
        val,
        "--out",
        out,
        *[a for s in sets for a in ("--set", s)],
        *extra,
    ]


def one_line_error(result) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


@pytest.fixture(scope="module")
def gpu_run(train_data, tmp_path_factory):
    """A short from-scratch run through the bytes path, counting the batches it decoded."""
    from ffcv_inat.loader.gpu import device_loader

    run = tmp_path_factory.mktemp("gpu_runs") / "run"
    decoded_batches = []
    real = device_loader.images_from_rows

    def counting(rows, headers, *args, **kwargs):
        decoded_batches.append(len(headers))
        return real(rows, headers, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(device_loader, "images_from_rows", counting)  # our own function, still called
        mp.setenv(GPU_PATH_ON_CPU, "1")
        result = ffcv_train(*train_args(train_data, run))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return run, decoded_batches


@pytest.mark.timeout(240)
def test_ffcv_train_learns_through_the_gpu_path_on_cpu(gpu_run):
    run, decoded_batches = gpu_run
    # 96 train images in batches of 16, 24 val images in batches of 16, 2 epochs.
    assert sum(decoded_batches) == 2 * 96 + 2 * 24
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in log] == [1, 2]
    assert log[1]["val_loss"] < log[0]["val_loss"] and log[1]["train_loss"] < math.log(4)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["top1"] >= 0.5  # 4 classes: chance is 0.25
    assert summary["decode"] == "gpu" and "decode: gpu" in (run / "config.yaml").read_text()


@pytest.mark.timeout(120)
def test_ffcv_train_eval_decodes_on_the_gpu_path(gpu_run, train_data, tmp_path, gpu_path_on_cpu):
    run, _ = gpu_run
    out = tmp_path / "eval"
    result = ffcv_train(
        "eval",
        "--checkpoint",
        run / "checkpoints" / "last.pt",
        "--val",
        train_data[1],
        "--out",
        out,
        "--batch-size",
        16,
        "--workers",
        2,
        "--decode",
        "gpu",
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    run_summary = json.loads((run / "summary.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["decode"] == "gpu"
    assert summary["top1"] == run_summary["top1"] and summary["top5"] == run_summary["top5"]
    assert summary["loss"] == pytest.approx(run_summary["loss"], rel=1e-5)
    assert (out / "per_class.csv").read_text() == (run / "per_class.csv").read_text()


@pytest.mark.timeout(120)
def test_ffcv_train_decode_gpu_without_cuda_is_a_one_line_error(train_data, tmp_path):
    error = one_line_error(ffcv_train(*train_args(train_data, tmp_path / "refused")))
    assert "data.decode" in error and "CUDA" in error


# data.decode is resolved before prepare_run_dir creates anything, so the same command with
# data.decode=cpu can follow on the same --out.
@pytest.mark.timeout(120)
def test_a_refused_decode_gpu_run_leaves_no_run_dir(train_data, tmp_path):
    out = tmp_path / "refused"
    one_line_error(ffcv_train(*train_args(train_data, out)))
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.rglob("*"))


@pytest.mark.timeout(120)
def test_ffcv_train_eval_decode_gpu_without_cuda_is_a_one_line_error(train_data, gpu_run):
    run, _ = gpu_run
    error = one_line_error(
        ffcv_train("eval", "--checkpoint", run / "checkpoints" / "last.pt", "--val", train_data[1], "--decode", "gpu")
    )
    assert "data.decode" in error and "CUDA" in error
