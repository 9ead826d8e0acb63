"""What every command line shares (`ffcv_inat.command_line`): `-h` everywhere, list options."""

import click
import pytest
from click.testing import CliRunner

from ffcv_inat import UserError
from ffcv_inat.analyze.cli import main as analyze_main
from ffcv_inat.bench.cli import main as bench_main
from ffcv_inat.command_line import parse_int_list
from ffcv_inat.demo import main as demo_main
from ffcv_inat.sweep.cli import main as sweep_main
from ffcv_inat.sweep.synthetic_data import main as sweep_data_main
from ffcv_inat.synthetic import main as synthetic_main
from ffcv_inat.training.cli import main as train_main
from ffcv_inat.training.demo import main as train_demo_main
from ffcv_inat.writers.cli import main as write_beton_main

COMMANDS = {
    "write-beton": write_beton_main,
    "ffcv-train": train_main,
    "ffcv-bench": bench_main,
    "ffcv-sweep": sweep_main,
    "ffcv-analyze": analyze_main,
    "demo": demo_main,
    "train demo": train_demo_main,
    "synthetic": synthetic_main,
    "sweep synthetic data": sweep_data_main,
}


def with_subcommands() -> list[tuple[str, click.Command, list[str]]]:
    """Every command and subcommand, groups of groups included (ffcv-bench prepare real-photos):
    (name, the command to invoke, the arguments that reach the subcommand)."""
    out = []

    def walk(name, top, group, args):
        out.append((name, top, args))
        for sub, command in getattr(group, "commands", {}).items():  # a group's subcommands inherit its settings
            walk(f"{name} {sub}", top, command, [*args, sub])

    for name, command in COMMANDS.items():
        walk(name, command, command, [])
    return out


@pytest.mark.timeout(60)
def test_every_command_and_subcommand_answers_dash_h():
    for name, command, args in with_subcommands():
        r = CliRunner().invoke(command, [*args, "-h"])
        assert r.exit_code == 0 and r.output.startswith("Usage: "), (name, r.output)


def test_parse_int_list():
    assert parse_int_list("160,192,224", "--res") == [160, 192, 224]
    assert parse_int_list(" 8, 16 ,", "--batch") == [8, 16]
    with pytest.raises(UserError, match=r"^--res takes comma-separated whole numbers, got '160,x'$"):
        parse_int_list("160,x", "--res")
    with pytest.raises(UserError, match=r"^--res is empty$"):
        parse_int_list(" , ", "--res")
