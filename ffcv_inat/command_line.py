"""What every command line of the toolkit shares: click's settings, bad input reported as one
line with a nonzero exit and no traceback, list options parsed, and a command run as its own
process (the demos' steps)."""

from __future__ import annotations

import functools
import subprocess

import click

from . import UserError
from .atomic import Terminated
from .failures import record_failure

# Every command and group takes these; a group's subcommands inherit them from its context.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def report_user_errors(fn):
    """UserError -> its one line and exit 1; SIGTERM -> exit 143; both recorded for a sweep
    (failures.record_failure) with their kind."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            record_failure(e)
            raise click.ClickException(str(e)) from None
        except Terminated as e:
            record_failure(e)
            click.echo("terminated by a signal; cleaned up", err=True)
            raise SystemExit(143) from None

    return wrapper


def run_step(cmd: list[str], quiet: bool = False) -> None:
    """Run one step of a demo as its own process, exactly as a user would type it; a failure is
    a one-line UserError naming the command (its own output says why)."""
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL if quiet else None)
    if proc.returncode != 0:
        raise UserError(f"demo step failed (exit {proc.returncode}): {' '.join(cmd[1:])}")


def parse_int_list(value: str, option: str) -> list[int]:
    """'160,192,224' -> [160, 192, 224]; anything else is a one-line error naming the option."""
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} takes comma-separated whole numbers, got {value!r}") from None
    if not items:
        raise UserError(f"{option} is empty")
    return items


def check_at_least(*checks: tuple[str, float | None, float]) -> None:
    """(option, value, least) triples: the first value under its least is a one-line error
    naming the option; None (an option not given) passes."""
    for name, value, least in checks:
        if value is not None and value < least:
            raise UserError(f"{name} must be at least {least}, got {value}")
