"""ffcv-bench on CPU with tiny synthetic data: real ffcv, torchvision and trainer, no mocks.

Speed is never asserted (this machine is shared); the tests check that each subcommand runs,
writes well-formed rows to the --results file it is given, and refuses bad arguments with
one clear line.
"""

import csv
import json
import os

import pytest
from click.testing import CliRunner

from ffcv_inat.bench.cli import main
from ffcv_inat.bench.data.image_folder import list_image_folder, write_source_beton
from helpers.errors import assert_one_line_error
from ffcv_inat.bench.results import COLUMNS, default_results, make_row
from ffcv_inat.bench.machine import environment
from ffcv_inat.classes import imagenet_classes
from ffcv_inat.synthetic import make_imagenet

WNIDS = [c.wnid for c in imagenet_classes()[:4]]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """16 images of 4 ImageNet classes (DIR/train/<wnid>/*.JPEG) and their beton."""
    root = tmp_path_factory.mktemp("bench")
    make_imagenet(root / "imagenet", train_per_class=4, val_per_class=0, size=40, wnids=WNIDS)
    images = root / "imagenet" / "train"
    beton = root / "train.beton"
    write_source_beton(list_image_folder(images), beton, workers=1)
    return images, beton


@pytest.fixture(autouse=True)
def repo_results_untouched():
    """No test may write the repository's own results file."""
    default = default_results()
    before = default.stat().st_mtime_ns if default.exists() else None
    yield
    after = default.stat().st_mtime_ns if default.exists() else None
    assert before == after


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def read_rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def assert_environment(row):
    assert row["host"] and row["timestamp"] and int(row["cpu_count"]) == os.cpu_count()
    assert row["gpu"] == "none" and row["ffcv"] == "1.0.2" and row["torch"] and row["torchvision"]


@pytest.mark.timeout(240)
def test_loader_compares_both_pipelines_and_the_machines_ceiling(data, tmp_path):
    images, _ = data
    out = tmp_path / "r.csv"
    # rounds of at least 0.3 s: several epochs of 16 images each, the ceiling's rounds as long
    r = invoke(
        "loader",
        "--images",
        images,
        "--res",
        32,
        "--batch",
        4,
        "--workers",
        1,
        "--epochs",
        1,
        "--warmup",
        1,
        "--min-seconds",
        0.3,
        "--label",
        "synthetic",
        "--results",
        out,
    )
    assert r.exit_code == 0, r.output
    rows = read_rows(out)
    assert [row["pipeline"] for row in rows] == ["ffcv", "dali", "pytorch"]  # DALI: make test installs it
    ffcv, dali, torch_ = rows
    for row in rows:
        assert_environment(row)
        assert row["bench"] == "loader" and row["res"] == "32" and row["batch"] == "4" and row["workers"] == "1"
        assert row["runs"] == "1" and row["command"].startswith("ffcv-bench loader --images ")
        assert (
            float(row["images_per_second_min"])
            <= float(row["images_per_second"])
            <= float(row["images_per_second_max"])
        )
        s = json.loads(row["settings"])
        # drop_last: 16 images at batch 4 = 4 full batches per epoch; both give uint8 Nx3x32x32
        assert s["num_images"] == 16 and s["images_per_epoch"] == 16 and s["batch_shape"] == [4, 3, 32, 32]
        assert s["images"] == "train"  # a folder outside the repo: its name, never this machine's absolute path
        assert s["images_label"] == "synthetic" and s["min_round_seconds"] == 0.3 and s["measured_rounds"] == 1
        assert s["device"] == "cpu"  # the batches stay on the host (the default without the GPU path)
        c = s["ceiling"]  # the same 16 JPEGs decoded on 1 thread, and decoded + resized to 32 px
        assert c["threads"] == 1 and c["images"] == 16 and c["decode"]["median"] > 0
        assert c["decode_resize"]["min"] <= c["decode_resize"]["median"] <= c["decode_resize"]["max"]
        assert c["fraction"] == pytest.approx(float(row["images_per_second"]) / c["decode_resize"]["median"], abs=1e-3)
        assert "device_decode" not in c  # no GPU path measured
        assert s["memory_added_mb"] > 0  # each pipeline in its own process: what its loader added there
    assert json.loads(ffcv["settings"])["decode"] == "cpu" and "decode" not in json.loads(torch_["settings"])
    assert json.loads(ffcv["settings"])["vs_dali"] == pytest.approx(
        float(ffcv["images_per_second"]) / float(dali["images_per_second"]), abs=1e-3
    )
    assert float(dali["ratio"]) == pytest.approx(
        float(dali["images_per_second"]) / float(torch_["images_per_second"]), rel=1e-3
    )
    assert "--decode cpu" in ffcv["command"]  # the default, recorded so the command can be retyped
    assert float(ffcv["ratio"]) == pytest.approx(
        float(ffcv["images_per_second"]) / float(torch_["images_per_second"]), rel=1e-3
    )
    assert torch_["ratio"] == ""
    assert "ffcv cpu / pytorch" in r.output and f"{float(ffcv['ratio']):.2f}x" in r.output
    assert "decode verdict" not in r.output  # one decode path: nothing to compare
    ceiling = [line for line in r.output.splitlines() if "of this machine's decode + resize ceiling" in line]
    assert [line.split(" (spread")[0] for line in ceiling] == [
        "res 32 ffcv seeded/cpu decode",
        "res 32 dali",
        "res 32 pytorch",
    ]
    (peers,) = [line for line in r.output.splitlines() if line.startswith("res 32 ffcv seeded/cpu: ")]
    assert f"{float(ffcv['ratio']):.2f}x PyTorch" in peers and "x DALI (CPU)" in peers and "of the ceiling" in peers
    assert all("1 thread); decode alone would be " in line for line in ceiling)
    # ffcv-bench report keeps the share of the ceiling in a column of its own
    from ffcv_inat.bench.report import results_table
    from ffcv_inat.bench.results import read_results

    table = results_table(read_results(out)).splitlines()
    assert table[0].split()[-1] == "of_ceiling"
    share = f"{100 * json.loads(ffcv['settings'])['ceiling']['fraction']:.0f}%"
    assert table[1].split()[-1] == share


@pytest.mark.timeout(120)
def test_loader_times_a_beton_alone_without_its_images(data, tmp_path):
    _, beton = data
    out = tmp_path / "r.csv"
    r = invoke(
        "loader",
        "--beton",
        beton,
        "--pipeline",
        "ffcv",
        "--res",
        32,
        "--batch",
        4,
        "--workers",
        1,
        "--epochs",
        1,
        "--warmup",
        0,
        "--min-seconds",
        0,
        "--no-ceiling",
        "--label",
        "real photos",
        "--results",
        out,
    )
    assert r.exit_code == 0, r.output
    (row,) = read_rows(out)
    s = json.loads(row["settings"])
    assert row["pipeline"] == "ffcv" and s["images"] == beton.name and s["images_label"] == "real photos"
    assert s["num_images"] == 16 and "ceiling" not in s
    assert_one_line_error(invoke("loader", "--beton", beton), "--images DIR is needed, unless --pipeline ffcv alone")


@pytest.mark.timeout(60)
def test_loader_refuses_a_beton_of_other_images(data, tmp_path):
    images, beton = data
    other = tmp_path / "other"
    make_imagenet(other, train_per_class=2, val_per_class=0, size=40, wnids=WNIDS[:2])
    r = invoke("loader", "--images", other / "train", "--beton", beton, "--batch", 2, "--results", tmp_path / "r.csv")
    assert_one_line_error(r, "the beton holds 16 images", "has 4 readable")
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--res", "abc"], ["--res takes comma-separated whole numbers"]),
        (["--workers", "0"], ["--workers must be at least 1"]),
        (["--min-seconds", "-1"], ["--min-seconds must be at least 0, got -1.0"]),
        (["--res", "160,8"], ["--res must be at least 16, got 8"]),
        (["--batch", "100"], ["--batch 100 is larger than the 16 images"]),
    ],
)
def test_loader_bad_arguments(data, tmp_path, args, fragments):
    images, beton = data
    r = invoke("loader", "--images", images, "--beton", beton, *args, "--results", tmp_path / "r.csv")
    assert_one_line_error(r, *fragments)


@pytest.mark.timeout(60)
def test_loader_needs_an_image_folder(tmp_path):
    assert_one_line_error(invoke("loader", "--images", tmp_path / "nope"), "--images: not a folder")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke("loader", "--images", tmp_path / "empty"), "not an ImageFolder tree")


@pytest.mark.timeout(120)
def test_model_runs_on_cpu_and_writes_a_row(tmp_path):
    out = tmp_path / "r.csv"
    r = invoke("model", "--res", 64, "--batch", 2, "--steps", 2, "--warmup", 1, "--no-channels-last", "--results", out)
    assert r.exit_code == 0, r.output
    (row,) = read_rows(out)
    assert_environment(row)
    assert (row["bench"], row["pipeline"], row["res"], row["batch"]) == ("model", "model", "64", "2")
    assert (row["precision"], row["channels_last"], row["compile"]) == ("fp32", "False", "False")
    assert row["memory_kind"] == "peak RSS of the process" and float(row["peak_memory_mb"]) > 0
    assert float(row["ms_per_step"]) > 0 and row["runs"] == "2"
    assert float(row["images_per_second_min"]) <= float(row["images_per_second_max"])
    assert json.loads(row["settings"]) == {"device": "cpu", "measured_steps": 2, "warmup_steps": 1}
    assert row["command"] == ("ffcv-bench model --res 64 --batch 2 --no-channels-last --steps 2 --warmup 1")
    assert "img/s" in r.output


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--precision", "fp16"], ["fp16 needs a CUDA GPU"]),
        (["--device", "cuda"], ["no CUDA GPU is visible"]),
        (["--device", "tpu"], ["--device"]),
        (["--res", "8"], ["--res must be at least 32"]),
        (["--steps", "0"], ["--steps must be at least 1"]),
        (["--compile", "--warmup", "0"], ["--compile needs --warmup of at least 1"]),
    ],
)
def test_model_bad_arguments(tmp_path, args, fragments):
    assert_one_line_error(invoke("model", *args, "--results", tmp_path / "r.csv"), *fragments)


def _fake_results(path):
    """Rows as the benches write them, with given figures (the report only reads them)."""
    env = environment()
    rows = []
    for res, ours, theirs in ((160, 3000.0, 800.0), (192, 2400.0, 700.0)):
        rows.append(
            make_row(
                "loader",
                "ffcv",
                "c",
                {},
                env=env,
                res=res,
                batch=256,
                workers=16,
                images_per_second=ours,
                images_per_second_min=ours - 10,
                images_per_second_max=ours + 10,
                runs=3,
                ratio=ours / theirs,
            )
        )
        rows.append(
            make_row(
                "loader",
                "pytorch",
                "c",
                {},
                env=env,
                res=res,
                batch=256,
                workers=16,
                images_per_second=theirs,
                images_per_second_min=theirs - 5,
                images_per_second_max=theirs + 5,
                runs=3,
            )
        )
        rows.append(
            make_row(
                "model",
                "model",
                "c",
                {},
                env=env,
                res=res,
                batch=256,
                precision="bf16",
                channels_last=True,
                compile=False,
                images_per_second=2500.0,
                ms_per_step=102.4,
            )
        )
    gpu = dict(env, gpu="NVIDIA H100 80GB HBM3", gpu_count=1, host="gpuhost")
    rows.append(
        make_row(
            "epoch",
            "trainer",
            "c",
            {"recipe": "pretrain_90ep.yaml"},
            env=gpu,
            res=224,
            batch=256,
            images_per_second=2000.0,
            epoch_seconds=640.5,
            extrapolated=True,
            verdict="the GPU is the limit: end to end runs at 97% of model-only speed",
        )
    )
    from ffcv_inat.bench.results import append_rows

    append_rows(path, rows)


@pytest.mark.timeout(120)
def test_report_prints_the_table_and_draws_plots(tmp_path):
    _fake_results(tmp_path / "r.csv")
    plots = tmp_path / "plots"
    plots.mkdir()
    r = invoke("report", "--results", tmp_path / "r.csv", "--out", plots)
    assert r.exit_code == 0, r.output
    assert "images_per_second" in r.output and "pytorch" in r.output and "3.75" in r.output  # 3000 / 800
    assert "the GPU is the limit" in r.output and "NVIDIA H100" in r.output
    for name in ("loader_throughput.png", "model_throughput.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_one_line_error(invoke("report", "--results", tmp_path / "none.csv"), "no results file")


@pytest.mark.timeout(60)
def test_cost_from_given_throughput_and_from_a_beton(data, tmp_path):
    r = invoke("cost", "--recipe", "pretrain_90ep.yaml", "--images-per-epoch", 1281167, "--images-per-second", 3000)
    assert r.exit_code == 0, r.output
    # 90 x 1,281,167 / 3,000 = 38,435.01 s = 10.68 h
    assert "90 epochs x 1,281,167 images / 3,000.0 img/s" in r.output
    # the figure's device is not known: device-hours, never "GPU-hours"
    assert "= 38,435 s = 10.68 hours wall, 10.68 device-hours on 1 device(s)" in r.output
    r = invoke(
        "cost",
        "--recipe",
        "pretrain_90ep.yaml",
        "--images-per-epoch",
        1281167,
        "--images-per-second",
        3000,
        "--machine",
        "H100",
        "--gpus",
        2,
    )
    assert r.exit_code == 0, r.output
    assert "= 38,435 s = 10.68 hours wall, 21.35 H100-hours on 2 x H100" in r.output
    _, beton = data
    r = invoke(
        "cost",
        "--recipe",
        "pretrain_90ep.yaml",
        "--train",
        beton,
        "--images-per-second",
        1,
        "--set",
        "schedule.epochs=60",
    )
    assert r.exit_code == 0, r.output
    assert "60 epochs x 16 images / 1.0 img/s" in r.output and "= 960 s = 0.27 hours" in r.output


@pytest.mark.timeout(60)
def test_cost_uses_the_newest_matching_epoch_row(tmp_path):
    _fake_results(tmp_path / "r.csv")
    r = invoke(
        "cost",
        "--recipe",
        "pretrain_90ep.yaml",
        "--images-per-epoch",
        1_000_000,
        "--machine",
        "H100",
        "--results",
        tmp_path / "r.csv",
    )
    assert r.exit_code == 0, r.output
    # 90 x 1,000,000 / 2,000 = 45,000 s = 12.5 h on the H100 row
    assert "on NVIDIA H100 80GB HBM3" in r.output
    assert "= 45,000 s = 12.50 hours wall, 12.50 H100-hours on 1 x H100" in r.output
    r = invoke(
        "cost",
        "--recipe",
        "pretrain_90ep.yaml",
        "--images-per-epoch",
        10,
        "--machine",
        "A100",
        "--results",
        tmp_path / "r.csv",
    )
    assert_one_line_error(r, "no epoch results for pretrain_90ep.yaml at batch 256, res 224", "ffcv-bench epoch")


@pytest.mark.timeout(60)
def test_cost_takes_the_row_of_the_recipes_decode_path(tmp_path):
    from ffcv_inat.bench.results import append_rows

    gpu = dict(environment(), gpu="NVIDIA H100 80GB HBM3", gpu_count=1, host="gpuhost")
    rows = [
        make_row(
            "epoch",
            "trainer",
            "c",
            {"recipe": "pretrain_90ep.yaml", "decode": d},
            env=gpu,
            res=224,
            batch=256,
            images_per_second=ips,
        )
        for d, ips in (("cpu", 2000.0), ("gpu", 2500.0))
    ]
    append_rows(tmp_path / "r.csv", rows)
    args = ["cost", "--recipe", "pretrain_90ep.yaml", "--images-per-epoch", 1_000_000, "--results", tmp_path / "r.csv"]
    # the recipe decodes on the CPU: its row, though the GPU path's is newer
    assert "= 45,000 s = 12.50 hours" in invoke(*args).output  # 90 x 1e6 / 2,000
    for decode in ("gpu", "auto"):  # auto is gpu on the H100
        r = invoke(*args, "--set", f"data.decode={decode}")
        assert r.exit_code == 0 and "= 36,000 s = 10.00 hours" in r.output, r.output  # 90 x 1e6 / 2,500


@pytest.mark.timeout(60)
def test_cost_from_a_cpu_row_names_the_cpu(tmp_path):
    from ffcv_inat.bench.results import append_rows

    cpu = dict(environment(), gpu="none", gpu_count=0, host="devbox", cpu_count=2)
    append_rows(
        tmp_path / "r.csv",
        [
            make_row(
                "epoch",
                "trainer",
                "c",
                {"recipe": "pretrain_90ep.yaml"},
                env=cpu,
                res=224,
                batch=256,
                images_per_second=4.0,
            )
        ],
    )
    r = invoke("cost", "--recipe", "pretrain_90ep.yaml", "--images-per-epoch", 1_000, "--results", tmp_path / "r.csv")
    assert r.exit_code == 0, r.output
    # 90 x 1,000 / 4 = 22,500 s = 6.25 h, on the CPU that measured it
    assert "on devbox (CPU x2, no GPU)" in r.output and "= 22,500 s = 6.25 hours on this CPU" in r.output
    assert "GPU-hours" not in r.output


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--recipe", "pretrain_90ep.yaml"], ["exactly one of --images-per-epoch"]),
        (["--recipe", "pretrain_90ep.yaml", "--images-per-epoch", "5", "--train", "x.beton"], ["exactly one of"]),
        (["--recipe", "pretrain_90ep.yaml", "--images-per-epoch", "0"], ["--images-per-epoch must be at least 1"]),
        (
            ["--recipe", "pretrain_90ep.yaml", "--images-per-epoch", "5", "--images-per-second", "-1"],
            ["must be positive"],
        ),
        (["--recipe", "no_such_recipe.yaml", "--images-per-epoch", "5"], ["recipe not found"]),
        (["--recipe", "pretrain_90ep.yaml", "--train", "missing.beton"], ["manifest not found"]),
    ],
)
def test_cost_bad_arguments(args, fragments):
    assert_one_line_error(invoke("cost", *args), *fragments)


@pytest.mark.timeout(300)
def test_epoch_runs_the_real_trainer_and_gives_a_verdict(data, tmp_path):
    _, beton = data
    out = tmp_path / "r.csv"
    r = invoke(
        "epoch",
        "--recipe",
        "smoke_cpu.yaml",
        "--train",
        beton,
        "--max-steps",
        1,
        "--warmup",
        0,
        "--set",
        "data.batch_size=2",
        "--set",
        "data.workers=1",
        "--results",
        out,
    )
    assert r.exit_code == 0, r.output
    (row,) = read_rows(out)
    assert_environment(row)
    assert (row["bench"], row["pipeline"], row["res"], row["batch"], row["workers"]) == (
        "epoch",
        "trainer",
        "32",
        "2",
        "1",
    )
    assert row["precision"] == "fp32" and row["extrapolated"] == "True" and row["runs"] == "1"
    s = json.loads(row["settings"])
    assert s["recipe"] == "smoke_cpu.yaml" and s["steps_per_epoch"] == 8 and s["steps_measured"] == 1
    assert s["num_images"] == 16 and s["max_steps"] == 1
    # a whole epoch (8 steps x 2 images) at the measured rate
    assert float(row["epoch_seconds"]) == pytest.approx(16 / float(row["images_per_second"]), rel=1e-3)
    assert float(row["ms_per_step"]) == pytest.approx(2000 / float(row["images_per_second"]), rel=1e-3)
    assert s["loader_only_images_per_second"] > 0 and s["model_only_images_per_second"] > 0
    assert s["limit"] in ("data", "compute", "overhead") and row["verdict"]
    assert s["decode"] == "cpu"  # the recipe's data.decode
    assert "extrapolated from 1 of 8 steps per epoch" in r.output and "verdict: " in r.output
    assert "decode verdict" not in r.output


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--recipe", "smoke_cpu.yaml", "--train", "missing.beton"], ["data.train: file not found: missing.beton"]),
        (["--recipe", "nope.yaml", "--train", "BETON"], ["recipe not found: nope.yaml"]),
        (["--recipe", "smoke_cpu.yaml", "--train", "BETON", "--max-steps", "0"], ["--max-steps must be at least 1"]),
        (
            ["--recipe", "smoke_cpu.yaml", "--train", "BETON", "--set", "data.batch_size=64"],
            ["make no full batch of 64"],
        ),
        (["--recipe", "smoke_cpu.yaml", "--train", "BETON", "--set", "optim.nope=1"], ["unknown key optim.nope"]),
    ],
)
def test_epoch_bad_arguments(data, tmp_path, args, fragments):
    _, beton = data
    args = [str(beton) if a == "BETON" else a for a in args]
    assert_one_line_error(invoke("epoch", *args, "--results", tmp_path / "r.csv"), *fragments)


@pytest.mark.timeout(60)
def test_without_dali_the_default_says_so_and_asking_for_it_is_one_line(data, tmp_path, monkeypatch, capsys):
    """DALI made unimportable (as on a machine without the [dali] extra)."""
    import sys

    from ffcv_inat.bench.throughput.commands import default_pipelines

    images, beton = data
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    assert default_pipelines() == ["ffcv", "pytorch"]
    assert "DALI is not installed, so its CPU pipeline is not measured: pip install 'ffcv-inat[dali]'" in (
        capsys.readouterr().err
    )
    r = invoke("loader", "--images", images, "--beton", beton, "--pipeline", "dali", "--results", tmp_path / "r.csv")
    assert_one_line_error(r, "--pipeline dali needs NVIDIA DALI: pip install 'ffcv-inat[dali]'")
    assert not (tmp_path / "r.csv").exists()
