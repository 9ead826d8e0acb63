"""The checks' subcommands: `ffcv-bench decode-check`, `fault-soak`, `beton-check` and `inat-json`."""

from __future__ import annotations

from pathlib import Path

import click

from ffcv_inat import UserError
from ffcv_inat.command_line import check_at_least, report_user_errors

from ffcv_inat.bench.checks.decode import CheckSettings
from ffcv_inat.bench.checks.inat_json import INAT_CATEGORIES, INAT_TRAIN_IMAGES
from ffcv_inat.bench.options import default_of, echo_err


def _default(name: str):
    return default_of(CheckSettings, name)


@click.command("decode-check", short_help="The GPU data path against the CPU's: pixels, streams, loss.")
@click.argument("beton", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Write the report here too.")
@click.option(
    "--images",
    "samples",
    type=int,
    default=_default("samples"),
    show_default=True,
    help="Check the first N samples (all if the beton has fewer).",
)
@click.option(
    "--batch",
    type=int,
    default=_default("batch"),
    show_default=True,
    help="Samples per loader batch, and per batched decode call in (a).",
)
@click.option("--res", type=int, default=_default("res"), show_default=True, help="Output size of (b) and (d).")
@click.option(
    "--workers", type=int, default=_default("workers"), show_default=True, help="ffcv workers; 0 = all usable cores."
)
@click.option(
    "--device",
    type=click.Choice(["cuda", "cpu"]),
    default="cuda",
    show_default=True,
    help="The device to check; cpu is a self-check of this command, not of the GPU path.",
)
@click.option(
    "--seed", type=int, default=_default("seed"), show_default=True, help="Crops, flips, order and model init."
)
@click.option(
    "--hazard-repeats",
    type=int,
    default=_default("hazard_rounds"),
    show_default=True,
    help="Rounds of (c); 0 skips it.",
)
@click.option(
    "--busy-ms", type=float, default=_default("busy_ms"), show_default=True, help="GPU work queued per round of (c)."
)
@click.option(
    "--train-steps",
    type=int,
    default=_default("train_steps"),
    show_default=True,
    help="Steps of (d) per path; 0 skips it.",
)
@click.option("--train-batch", type=int, default=_default("train_batch"), show_default=True, help="Batch of (d).")
@click.option("--recipe", default=_default("recipe"), show_default=True, help="Recipe of (d).")
@report_user_errors
def decode_check(
    beton, out, samples, batch, res, workers, device, seed, hazard_repeats, busy_ms, train_steps, train_batch, recipe
):
    """The GPU data path's pixels against the CPU's (a, b), its stream safety (c), and its
    training loss against the CPU path's (d); exits 1 when a part fails."""
    from ffcv_inat.atomic import write_text_atomic
    from ffcv_inat.environment import resolve_device, resolve_workers

    from ffcv_inat.bench.checks.decode import failures, format_report, run_check

    check_at_least(
        ("--images", samples, 1),
        ("--batch", batch, 1),
        ("--res", res, 16),
        ("--hazard-repeats", hazard_repeats, 0),
        ("--train-steps", train_steps, 0),
        ("--train-batch", train_batch, 1),
    )
    if busy_ms <= 0:
        raise UserError(f"--busy-ms must be positive, got {busy_ms}")
    if not Path(out).parent.is_dir():
        raise UserError(f"--out: folder does not exist: {Path(out).parent}")
    settings = CheckSettings(
        samples, batch, res, resolve_workers(workers), seed, hazard_repeats, busy_ms, train_steps, train_batch, recipe
    )

    def keep(r) -> None:
        write_text_atomic(out, format_report(r) + "\n")

    report = run_check(beton, resolve_device(device, "--device"), settings, echo=echo_err, keep=keep)
    click.echo(format_report(report))
    if failures(report):
        raise SystemExit(1)


@click.command("fault-soak", short_help="SIGKILL and resume a run; bit-identical to an uninterrupted one?")
@click.option("--kills", type=int, default=8, show_default=True, help="SIGKILLs, a third of them mid-checkpoint.")
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the kill moments.")
@click.option("--work", type=click.Path(file_okay=False), default=None, help="Work dir (default: a temporary one).")
@report_user_errors
def fault_soak(kills, epochs, seed, work):
    """Kill a short ffcv-train run with SIGKILL KILLS times (at random moments and mid-checkpoint),
    resume it each time, and check it ends bit-identical to an uninterrupted run with each epoch
    logged once; exits 1 when it does not."""
    from ffcv_inat.bench.checks.fault_soak import run_fault_soak

    check_at_least(("--kills", kills, 0), ("--epochs", epochs, 1))
    if not run_fault_soak(kills, epochs, seed, work, echo=click.echo):
        raise SystemExit(1)


@click.command("beton-check", short_help="What the beton integrity checks cost, warm and cold.")
@click.argument("work_dir", type=click.Path(file_okay=False))
@click.option("--gib", type=float, default=1.0, show_default=True, help="Size of the real beton written and timed.")
@click.option("--repeats", type=int, default=11, show_default=True, help="Timed runs of each check (median).")
@click.option("--workers", type=int, default=2, show_default=True, help="Writer workers.")
@report_user_errors
def beton_check(work_dir, gib, repeats, workers):
    """What the beton integrity checks cost: check_beton warm and cold, sha256 (write-beton
    --verify) on a real beton of --gib in WORK_DIR, and check_beton on ImageNet's layout."""
    from ffcv_inat.bench.checks.beton_check import measure_check_cost

    check_at_least(("--repeats", repeats, 1), ("--workers", workers, 1))
    if gib <= 0:
        raise UserError(f"--gib must be positive, got {gib}")
    measure_check_cost(work_dir, gib, repeats, workers, echo=click.echo)


@click.command("inat-json", short_help="Peak memory and seconds of reading iNat-2021's train.json, both ways.")
@click.argument("work_dir", type=click.Path(file_okay=False))
@click.option("--images", type=int, default=INAT_TRAIN_IMAGES, show_default=True, help="Images (and annotations).")
@click.option("--categories", type=int, default=INAT_CATEGORIES, show_default=True)
@click.option("--repeats", type=int, default=2, show_default=True, help="Reads of each way, interleaved.")
@click.option("--keep", is_flag=True, help="Keep WORK_DIR/train.json afterwards.")
@report_user_errors
def inat_json(work_dir, images, categories, repeats, keep):
    """A synthetic train.json of iNat-2021's size and schema in WORK_DIR, read with json.load
    (every key) and with write-beton's reader (the keys the splits read), each in a fresh process."""
    from ffcv_inat.bench.checks.inat_json import run_inat_json

    check_at_least(("--images", images, 1), ("--categories", categories, 1), ("--repeats", repeats, 1))
    run_inat_json(Path(work_dir), images, categories, repeats, keep, echo=click.echo)


COMMANDS = [decode_check, fault_soak, beton_check, inat_json]
