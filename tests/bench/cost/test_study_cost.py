"""`ffcv-bench cost --plan`: the whole study's device-hours and wall time from measured rows
(bench/cost/study.py). Pure arithmetic pinned on given numbers; one end-to-end run over a
real `ffcv-sweep plan` of the paper's grid."""

import pytest
from click.testing import CliRunner

from ffcv_inat.bench.cli import main
from ffcv_inat.bench.machine import environment
from ffcv_inat.bench.results import append_rows, make_row
from ffcv_inat import UserError
from ffcv_inat.bench.cost.study import ClusterShape, assumed_images, cluster_wall_hours, parse_cluster, wall_hours
from ffcv_inat.sweep.cli import main as sweep_main
from ffcv_inat.sweep.plan import TRAIN_KINDS, read_plan
from helpers.errors import assert_one_line_error


def test_assumed_images_from_the_datasets_sizes():
    assert assumed_images("imagenet", 1000) == 1_281_167 and assumed_images("imagenet", 100) == 128_117
    assert assumed_images("inat-mini-a", 5_388) == 269_400


def test_wall_hours_respects_dependencies_and_devices():
    hours = {"pre_a": 10.0, "pre_b": 6.0, "fine_a": 3.0, "fine_b": 3.0, "scratch": 4.0}
    deps = {"fine_a": ("pre_a", "beton"), "fine_b": ("pre_b",)}  # betons are not priced: done
    assert wall_hours(hours, deps, 1) == 26.0  # one device: the sum
    # two devices: pre_a 0-10 | pre_b 0-6, scratch 6-10, fine_b 10-13 | fine_a 10-13
    assert wall_hours(hours, deps, 2) == 13.0
    assert wall_hours(hours, deps, 64) == 13.0  # the longest chain
    with pytest.raises(ValueError, match="devices must be at least 1"):
        wall_hours(hours, deps, 0)


def test_cluster_wall_hours_holds_each_runs_gpus_on_one_node():
    hours = {"pre_a": 16.0, "pre_b": 8.0, "fine_a": 3.0, "fine_b": 3.0, "scratch": 4.0}  # one-GPU hours
    gpus = {"pre_a": 8, "pre_b": 8, "fine_a": 1, "fine_b": 1, "scratch": 1}
    deps = {"fine_a": ("pre_a", "beton"), "fine_b": ("pre_b",)}
    # one node: pre_a 0-2 (16 h / 8 GPUs), pre_b 2-3, then fine_a, fine_b 3-6 and scratch 3-7 side by side
    assert cluster_wall_hours(hours, gpus, deps, ClusterShape(1, 8)) == 7.0
    # two nodes: pre_a 0-2 | pre_b 0-1, then fine_b 1-4, scratch 1-5 on its node, fine_a 2-5 on the first
    assert cluster_wall_hours(hours, gpus, deps, ClusterShape(2, 8)) == 5.0
    with pytest.raises(UserError, match="pre_a asks for 16 GPUs but a node of 2 nodes x 8 GPUs has 8"):
        cluster_wall_hours(hours, {**gpus, "pre_a": 16}, deps, ClusterShape(2, 8))
    assert parse_cluster("4x8") == ClusterShape(4, 8)
    for bad in ("4", "x8", "0x8", "4x", "four x 8"):
        with pytest.raises(UserError, match=f"--cluster {bad}: expected NODESxGPUS"):
            parse_cluster(bad)


@pytest.fixture(scope="module")
def paper_plan(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "plan.csv"
    r = CliRunner().invoke(sweep_main, ["plan", "--k", "50", "--families", "A", "--out", str(path)])
    assert r.exit_code == 0, r.output
    return path


@pytest.mark.timeout(60)
def test_study_cost_prices_every_run_from_the_machines_rows(paper_plan, tmp_path):
    gpu = dict(environment(), gpu="NVIDIA H100 80GB HBM3", gpu_count=1, host="gpuhost")
    cpu = dict(environment(), gpu="none", gpu_count=0, host="devbox", cpu_count=2)
    append_rows(
        tmp_path / "r.csv",
        [
            make_row(
                "epoch",
                "trainer",
                "c",
                {"recipe": "pretrain_90ep.yaml"},
                env=gpu,
                res=224,
                batch=256,
                images_per_second=2000.0,
            ),
            make_row(
                "epoch",
                "trainer",
                "c",
                {"recipe": "pretrain_90ep.yaml"},
                env=cpu,
                res=224,
                batch=256,
                images_per_second=4.0,
            ),
        ],
    )
    r = CliRunner().invoke(
        main, ["cost", "--plan", str(paper_plan), "--devices", "1,4", "--results", str(tmp_path / "r.csv")]
    )
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    # pretraining on A-50: 90 epochs x 64,058 images (50 classes x 1,281.167) / 2,000 img/s = 0.80 h
    pre = next(line for line in lines if line.startswith("pretrain_A-50-s0"))
    assert pre.split() == ["pretrain_A-50-s0", "pretrain", "90", "64,058", "2,000.0", "0.80", "[1]"]
    # finetuning on iNat-Mini-A: 60 x 269,400 at another recipe's rate (same resolution), assumed alike
    fine = next(line for line in lines if line.startswith("finetune_A-50-s0"))
    assert fine.split()[2:7] == ["60", "269,400", "2,000.0", "2.25", "[2]"]
    assert "priced on the newest GPU machine measured:" in r.output
    assert "[1] ffcv-bench epoch of this recipe of " in r.output and " on NVIDIA H100 80GB HBM3" in r.output
    assert "[2] ffcv-bench epoch of another recipe at this resolution (assumed alike)" in r.output
    assert "iNat-2021 mini's 50 images per species x 5,388 animal species" in r.output
    runs = [row for row in read_plan(paper_plan) if row.kind in TRAIN_KINDS]
    total = next(line for line in lines if line.startswith("total: "))
    assert total.startswith(f"total: {len(runs)} training runs, ")  # every training run, priced
    assert len([line for line in lines if line.split(" ")[0] in {row.run_id for row in runs}]) == len(runs)
    assert "wall time on 1 device: " in r.output and "wall time on 4 devices: " in r.output
    # on a cluster shape, with GPUs per kind of run: its wall time and the scaling it assumes
    r = CliRunner().invoke(
        main,
        ["cost", "--plan", str(paper_plan), "--cluster", "2x8", "--gpus-per-run", "pretrain=8"]
        + ["--results", str(tmp_path / "r.csv")],
    )
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("wall time on 2 nodes x 8 GPUs"))
    assert "(16 GPUs; GPUs per run: pretrain 8, finetune 1, linear 1, scratch 1): " in line
    assert line.endswith(
        "a run on g GPUs takes 1/g of its one-GPU time (linear scaling, an upper bound on the "
        "speed-up; not measured here)"
    )
    # the CPU machine named: its hours, said to be no GPU's
    r = CliRunner().invoke(
        main, ["cost", "--plan", str(paper_plan), "--machine", "devbox", "--results", str(tmp_path / "r.csv")]
    )
    assert r.exit_code == 0, r.output
    assert "no GPU row: these are hours of the CPU that was measured" in r.output
    assert "pretrain_A-50-s0 " in r.output and " 400.36 " in r.output  # 90 x 64,058 / 4 / 3600


@pytest.mark.timeout(60)
def test_study_cost_bad_arguments(paper_plan, tmp_path):
    assert_one_line_error(
        CliRunner().invoke(main, ["cost", "--plan", str(paper_plan), "--recipe", "x.yaml"]),
        "exactly one of --recipe R and --plan PLAN.csv",
    )
    assert_one_line_error(CliRunner().invoke(main, ["cost", "--plan", str(tmp_path / "none.csv")]), "plan not found")
    env = dict(environment(), gpu="none", gpu_count=0, host="devbox", cpu_count=2)
    append_rows(
        tmp_path / "r.csv", [make_row("model", "model", "c", {}, env=env, res=160, batch=256, images_per_second=4.0)]
    )
    args = ["cost", "--plan", str(paper_plan), "--results", str(tmp_path / "r.csv")]
    assert_one_line_error(CliRunner().invoke(main, args + ["--machine", "H100"]), "--machine H100: no measured row")
    assert_one_line_error(CliRunner().invoke(main, args), "no epoch, model or loader row at res 224")
    assert_one_line_error(CliRunner().invoke(main, args + ["--devices", "0"]), "--devices must be at least 1")
    assert_one_line_error(
        CliRunner().invoke(main, args + ["--gpus-per-run", "pretrain=8"]), "--gpus-per-run goes with --cluster"
    )
    assert_one_line_error(
        CliRunner().invoke(main, args + ["--cluster", "2x8", "--gpus-per-run", "beton=1"]),
        "--gpus-per-run beton=1: a beton job takes no --gpus-per-run",
    )
    assert_one_line_error(
        CliRunner().invoke(main, ["cost", "--recipe", "pretrain_90ep.yaml", "--cluster", "2x8"]),
        "--cluster and --gpus-per-run go with --plan",
    )
