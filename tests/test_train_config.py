"""Recipes into typed config, overrides, and the one-line errors of `ffcv-train` (CliRunner)."""

import pytest
import yaml
from click.testing import CliRunner

from ffcv_inat import UserError
from ffcv_inat.config import load_config, to_yaml, validate
from ffcv_inat.training.cli import main

pytestmark = pytest.mark.timeout(60)


def run_cli(*args):
    return CliRunner().invoke(main, list(args))


def test_bundled_recipe_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config("pretrain_90ep.yaml")
    assert cfg.recipe == "pretrain_90ep.yaml" and cfg.schedule.epochs == 90
    assert load_config("pretrain_90ep").recipe == "pretrain_90ep.yaml"


def test_set_overrides_are_typed_yaml_scalars():
    cfg = load_config(
        "smoke_cpu.yaml",
        [
            "optim.lr=5e-2",
            "schedule.max_steps_per_epoch=3",
            "data.augment=false",
            "schedule.milestones=[1, 2]",
            "precision=bf16",
            "compile=true",
        ],
    )
    assert cfg.optim.lr == 0.05 and isinstance(cfg.optim.lr, float)
    assert cfg.schedule.max_steps_per_epoch == 3 and cfg.data.augment is False
    assert cfg.schedule.milestones == [1, 2] and cfg.precision == "bf16" and cfg.compile is True
    cfg = load_config("smoke_cpu.yaml", ["optim.lr=1"])  # an int is a valid float
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert yaml.safe_load(to_yaml(cfg))["optim"]["lr"] == 1.0


@pytest.mark.parametrize(
    "sets, message",
    [
        (["optim.lrr=0.1"], "--set optim.lrr=0.1: unknown key optim.lrr"),
        (["optim.lr=fast"], "--set optim.lr=fast: optim.lr must be float, got str 'fast'"),
        (["data.augment=1"], "data.augment must be bool"),
        (["precision=fp8"], "precision must be one of bf16, fp16, fp32"),
        (["nosuch.key=1"], "unknown key nosuch"),
        (["schedule.epochs"], "expected KEY=VALUE"),
    ],
)
def test_bad_overrides_name_the_key(sets, message):
    with pytest.raises(UserError) as e:
        load_config("smoke_cpu.yaml", sets)
    assert message in str(e.value)


def test_recipe_file_errors_name_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: 0.1\n  betas: [0.9]\n")
    with pytest.raises(UserError, match=f"{bad}: unknown key optim.betas"):
        load_config(str(bad))
    bad.write_text("schedule:\n  epochs: ten\n")
    with pytest.raises(UserError, match=f"{bad}: schedule.epochs must be int, got str 'ten'"):
        load_config(str(bad))
    bad.write_text("data: [1, 2]\n")
    with pytest.raises(UserError, match="data must be a mapping"):
        load_config(str(bad))


def test_required_values(tmp_path):
    cfg = load_config("finetune_inat_60ep.yaml", [f"data.train={tmp_path}/x.beton"])
    with pytest.raises(UserError, match=r"finetune_inat_60ep.yaml: model.init is required \(pass --init CKPT\)"):
        validate(cfg)
    cfg = load_config("pretrain_90ep.yaml")
    with pytest.raises(UserError, match=r"data.train is required \(pass --train"):
        validate(cfg)
    cfg = load_config("pretrain_90ep.yaml", [f"data.train={tmp_path}/missing.beton"])
    with pytest.raises(UserError, match=f"data.train: file not found: {tmp_path}/missing.beton"):
        validate(cfg)


def test_cli_errors_are_one_line(tmp_path):
    cases = [
        (["--recipe", "nope.yaml"], "recipe not found: nope.yaml"),
        (["--recipe", "smoke_cpu.yaml", "--set", "optim.momentum=high"], "optim.momentum must be float"),
        (["--recipe", "smoke_cpu.yaml"], "data.train is required"),
        (["--recipe", "finetune_inat_60ep.yaml", "--train", str(tmp_path / "t.beton")], "model.init is required"),
        (["--recipe", "smoke_cpu.yaml", "--train", str(tmp_path / "t.beton")], "data.train: file not found"),
        (["--help"], None),  # the help text, exit 0
    ]
    for args, message in cases:
        result = run_cli(*args)
        if message is None:
            assert result.exit_code == 0 and "eval" in result.output
            continue
        assert result.exit_code == 1, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output


def test_eval_cli_errors(tmp_path):
    result = run_cli("eval", "--checkpoint", str(tmp_path / "none.pt"), "--val", str(tmp_path / "v.beton"))
    assert result.exit_code == 1 and "checkpoint not found" in result.output
