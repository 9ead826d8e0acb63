"""`ffcv-bench`: every benchmark, check and data-preparing step of the toolkit, one command.

The subcommands come from one list, `SECTIONS`, each section the `COMMANDS` of the subpackage
that holds its code, and `--help` shows them grouped so. Measurements append rows to
./bench/results/results.csv (or --results PATH, or $FFCV_INAT_BENCH_RESULTS) with the machine
and versions they ran on; `ffcv-bench report` prints them and draws the plots.
"""

from __future__ import annotations

from pathlib import Path

import click

from ffcv_inat.command_line import CONTEXT_SETTINGS, report_user_errors

from ffcv_inat.bench.checks.commands import COMMANDS as CHECKS
from ffcv_inat.bench.cost.commands import COMMANDS as COST
from ffcv_inat.bench.data.commands import COMMANDS as DATA
from ffcv_inat.bench.options import echo_err, results_option
from ffcv_inat.bench.throughput.commands import COMMANDS as THROUGHPUT


@click.command(short_help="Every results row as a table, and the throughput plots.")
@results_option(help="CSV to read.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the PNG plots. Default: beside the results CSV.",
)
@click.option("--no-plots", is_flag=True, help="Only print the table.")
@report_user_errors
def report(results, out_dir, no_plots):
    """Print every results row as a table and draw the throughput plots."""
    from ffcv_inat.bench.report import draw_plots, results_table
    from ffcv_inat.bench.results import read_results

    df = read_results(results)
    click.echo(results_table(df))
    if not no_plots:
        for path in draw_plots(df, out_dir or Path(results).parent):
            echo_err(f"wrote {path}")


# (title, commands): the one list `ffcv-bench` is built from.
SECTIONS = [
    ("Throughput (bench/throughput/)", THROUGHPUT),
    ("Cost (bench/cost/)", COST),
    ("Checks (bench/checks/)", CHECKS),
    ("Data for the benchmarks (bench/data/)", DATA),
    ("Results (bench/results/)", [report]),
]


def _listed(commands) -> list[tuple[str, click.Command]]:
    """(name as typed, command) of each command, a group's subcommands as `group sub`."""
    out = []
    for c in commands:
        if isinstance(c, click.Group):
            out += [(f"{c.name} {name}", sub) for name, sub in c.commands.items()]
        else:
            out.append((c.name, c))
    return out


class SectionedGroup(click.Group):
    """A click group whose --help lists its subcommands under their section's title."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections = [(title, _listed(commands)) for title, commands in SECTIONS]
        width = max(len(name) for _, listed in sections for name, _ in listed)
        for title, listed in sections:
            with formatter.section(title):
                formatter.write_dl(
                    [(name.ljust(width), c.get_short_help_str(limit=formatter.width - width - 6)) for name, c in listed]
                )


@click.group(
    cls=SectionedGroup, context_settings=CONTEXT_SETTINGS, commands=[c for _, commands in SECTIONS for c in commands]
)
def main():
    """Benchmarks, checks and their data: loader, model and end-to-end throughput, cost
    predictions, the GPU path's and the resume path's checks, and the results table.

    \b
    ffcv-bench loader --images IMAGENET/train --res 160,192,224 --workers 16 --decode cpu,gpu
    ffcv-bench model --res 224 --batch 256 --precision bf16 --compile
    ffcv-bench epoch --recipe pretrain_90ep.yaml --train A.beton --max-steps 100 --decode cpu,gpu
    ffcv-bench cost --plan plan.csv --machine H100 --devices 8
    ffcv-bench decode-check real.beton --out decode_check.txt
    ffcv-bench prepare real-photos /data/imagen bench/real_photos
    ffcv-bench report
    """


if __name__ == "__main__":
    main()
