"""What the `ffcv-bench` subcommands share on their command line: the results file, the decode
paths, the command as recorded in every row, defaults taken from a settings dataclass, and
writing rows."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import click

from ffcv_inat import UserError
from ffcv_inat.config import DECODES

from ffcv_inat.bench.results import DEFAULT_RESULTS_SHOWN, append_rows, default_results, recorded_path


def echo_err(msg: str) -> None:
    click.echo(msg, err=True)


def default_of(settings: type, name: str):
    """The default of field `name` of the dataclass `settings`: a click option's default, so the
    two cannot disagree."""
    for f in dataclasses.fields(settings):
        if f.name == name:
            if f.default is dataclasses.MISSING:
                raise ValueError(f"{settings.__name__}.{name} has no default")
            return f.default
    raise ValueError(f"{settings.__name__} has no field {name!r}")


def command_line(ctx: click.Context) -> str:
    """The command as it could be retyped, from the parsed options (recorded in every row);
    paths as `recorded_path` names them, never a machine's absolute path."""
    names = []
    c = ctx
    while c.parent is not None:  # the subcommand's path below ffcv-bench (prepare real-photos)
        names.insert(0, c.info_name)
        c = c.parent
    parts = ["ffcv-bench", *names]
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if isinstance(p, click.Argument):  # positional: where the command takes it
            for item in v if p.multiple or p.nargs != 1 else [v]:
                parts.append(recorded_path(Path(item).resolve()) if isinstance(p.type, click.Path) else str(item))
            continue
        if p.name in ("results",):
            continue
        if v is None or v is False and not p.secondary_opts:
            continue
        if isinstance(p.type, click.Path):
            v = recorded_path(Path(v).resolve())
        if p.is_flag:
            if p.secondary_opts:
                parts.append(p.opts[0] if v else p.secondary_opts[0])
            else:
                parts.append(p.opts[0])
        elif p.multiple:
            for item in v:
                parts += [p.opts[0], str(item)]
        else:
            parts += [p.opts[0], str(v)]
    return shlex.join(parts)


def results_option(fn=None, *, help: str = "CSV to append the rows to."):
    """--results PATH, default `default_results()` when the command runs (the working directory's,
    or $FFCV_INAT_BENCH_RESULTS)."""

    def decorate(f):
        return click.option(
            "--results",
            "results",
            type=click.Path(dir_okay=False),
            default=None,
            show_default=DEFAULT_RESULTS_SHOWN,
            help=help,
            callback=lambda ctx, param, v: str(v or default_results()),
        )(f)

    return decorate(fn) if fn is not None else decorate


def decode_option(default: str | None, help: str):
    """--decode: comma-separated or repeated values of DECODES."""
    return click.option(
        "--decode",
        "decode_opts",
        multiple=True,
        default=(default,) if default else (),
        show_default=default is not None,
        metavar="|".join(DECODES) + "[,...]",
        help=help,
    )


def parse_decodes(values) -> list[str]:
    """--decode cpu,gpu --decode auto -> ["cpu", "gpu", "auto"] (each once, in order given)."""
    items = [v.strip() for value in values for v in value.split(",") if v.strip()]
    for v in items:
        if v not in DECODES:
            raise UserError(f"--decode takes {', '.join(DECODES)} (comma-separated or repeated), got {v!r}")
    return list(dict.fromkeys(items))


def write_rows(results: str, records: list[dict]) -> None:
    """Append CSV rows (results.to_record) to `results` and say so on stderr."""
    path = append_rows(results, records)
    echo_err(f"appended {len(records)} row{'s' if len(records) != 1 else ''} to {path}")
