"""Resources per kind of run (ffcv_inat/sweep/resources.py): parsing, the #SBATCH lines each kind
of job gets, and one-line refusals before anything is queued."""

import pytest
from click.testing import CliRunner

from ffcv_inat import UserError
from ffcv_inat.sweep.cli import main as sweep_main
from ffcv_inat.sweep.plan import read_plan
from ffcv_inat.sweep.resources import PerKind, parse_per_kind
from ffcv_inat.sweep.slurm import SlurmOptions, job_minutes, job_resources

pytestmark = pytest.mark.timeout(60)


def test_one_value_or_kind_value_pairs():
    assert parse_per_kind("--cpus-per-task", None, 10) == PerKind(10)
    assert parse_per_kind("--cpus-per-task", "16", 10) == PerKind(16)
    got = parse_per_kind("--cpus-per-task", "beton=32, pretrain=96", 10)
    assert [got.of(k) for k in ("beton", "data", "pretrain", "finetune", "linear")] == [32, 32, 96, 10, 10]
    timeout = parse_per_kind("--timeout-min", None, 4320, defaults={"beton": 720})
    assert (timeout.of("beton"), timeout.of("scratch")) == (720, 4320)
    assert parse_per_kind("--timeout-min", "60", 4320, defaults={"beton": 720}).of("beton") == 60  # one for all
    assert parse_per_kind("--timeout-min", "pretrain=9000", 4320, defaults={"beton": 720}).values == {
        "beton": 720,
        "pretrain": 9000,
    }
    gpus = parse_per_kind("--gpus-per-run", "pretrain=8,finetune=0", 1, minimum=0, kinds=("pretrain", "finetune"))
    assert (gpus.of("pretrain"), gpus.of("finetune"), gpus.of("linear")) == (8, 0, 1)


@pytest.mark.parametrize(
    "option, text, kinds, message",
    [
        ("--cpus-per-task", "prertain=8", None, "--cpus-per-task prertain=8: unknown kind 'prertain' (kinds: beton,"),
        ("--gpus-per-run", "beton=1", ("pretrain",), "--gpus-per-run beton=1: a beton job takes no --gpus-per-run"),
        ("--mem-gb", "pretrain=lots", None, "--mem-gb pretrain=lots: pretrain='lots' is not a whole number"),
        ("--mem-gb", "0", None, "--mem-gb 0: 0 is below 1"),
        (
            "--cpus-per-task",
            "pretrain=8,pretrain=4",
            None,
            "--cpus-per-task pretrain=8,pretrain=4: pretrain given twice",
        ),
        ("--cpus-per-task", "pretrain:8", None, "--cpus-per-task pretrain:8: expected a whole number or KIND=VALUE"),
        ("--cpus-per-task", "pretrain=8,4", None, "--cpus-per-task pretrain=8,4: expected a whole number or KIND="),
    ],
)
def test_bad_values_are_one_line_naming_the_option(option, text, kinds, message):
    with pytest.raises(UserError) as e:
        parse_per_kind(option, text, 10, **({"kinds": kinds} if kinds else {}))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_each_kind_of_job_asks_for_its_own(tmp_path):
    plan = tmp_path / "plan.csv"
    r = CliRunner().invoke(sweep_main, ["plan", "--grid", "smoke", "--set", "device=auto", "--out", str(plan)])
    assert r.exit_code == 0, r.output
    rows = {r.run_id: r for r in read_plan(plan)}
    opts = SlurmOptions(
        gpus_per_run=PerKind(1, {"pretrain": 8}),
        cpus_per_task=PerKind(10, {"beton": 32, "pretrain": 96}),
        mem_gb=PerKind(None, {"beton": 64, "pretrain": 500}),
        timeout_min=PerKind(4320, {"beton": 720, "linear": 600}),
    )
    pre, lin, beton = rows["pretrain_all-s0"], rows["linear_R-8-s0"], rows["beton_imagenet_all_train"]
    assert job_resources(pre, opts) == {"cpus-per-task": "96", "mem": "500G", "gres": "gpu:8"}
    assert job_resources(lin, opts) == {"cpus-per-task": "10", "gres": "gpu:1"}
    assert job_resources(beton, opts) == {"cpus-per-task": "32", "mem": "64G"}  # a beton asks for no GPU
    assert [job_minutes(r, opts) for r in (pre, lin, beton, rows["data_synthetic"])] == [4320, 600, 720, 720]
    assert job_minutes(pre, SlurmOptions()) == 4320 and job_minutes(beton, SlurmOptions()) == 720


def test_run_refuses_a_bad_resource_before_anything_runs(tmp_path):
    plan = tmp_path / "plan.csv"
    assert CliRunner().invoke(sweep_main, ["plan", "--grid", "smoke", "--out", str(plan)]).exit_code == 0
    for args, message in (
        (["--gpus-per-run", "beton=1"], "--gpus-per-run beton=1: a beton job takes no --gpus-per-run"),
        (["--cpus-per-task", "pretrian=4"], "unknown kind 'pretrian'"),
        (["--gres", "gpu:8", "--gpus-per-run", "pretrain=8"], "give --gpus-per-run one number with it"),
        (["--gres", "gpu:8", "--gpus-per-run", "2"], "--gres gpu:8 asks for 8 GPUs but --gpus-per-run is 2"),
        (["--timeout-min", "0"], "--timeout-min 0: 0 is below 1"),
    ):
        r = CliRunner().invoke(sweep_main, ["run", str(plan), *args])
        assert r.exit_code == 1 and message in r.output and len(r.output.splitlines()) == 1, r.output
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()  # nothing ran
