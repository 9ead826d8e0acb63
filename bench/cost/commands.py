"""The cost subcommand: `ffcv-bench cost`, of one recipe or of a whole plan."""

from __future__ import annotations

import click

from ffcv_inat import UserError
from ffcv_inat.command_line import check_at_least, parse_int_list, report_user_errors

from ffcv_inat.bench.options import results_option


@click.command(short_help="Wall time and device-hours of a recipe or a whole plan.")
@click.option("--recipe", default=None, help="Bundled recipe name (pretrain_90ep.yaml) or a YAML path.")
@click.option(
    "--plan",
    "plan_csv",
    type=click.Path(dir_okay=False),
    default=None,
    help="Or: a plan of ffcv-sweep plan; every training run priced, the grid's device-hours and wall time.",
)
@click.option("--images-per-epoch", type=int, default=None, help="Training images per epoch.")
@click.option(
    "--train",
    "train",
    type=click.Path(dir_okay=False),
    default=None,
    help="Or: the train beton, whose manifest gives images per epoch.",
)
@click.option(
    "--images-per-second",
    type=float,
    default=None,
    help="Throughput to assume. Default: the newest `ffcv-bench epoch` row of this recipe.",
)
@click.option(
    "--machine",
    default=None,
    help="Use only results whose GPU name or host contains this (e.g. H100). With --images-per-second: "
    "the device that figure is from (e.g. H100, cpu), which names the hours.",
)
@click.option(
    "--gpus",
    type=int,
    default=None,
    help="GPUs that produced the throughput (for e.g. H100-hours). Default: the row's GPU count, else 1.",
)
@click.option(
    "--devices",
    default="1,8,64",
    show_default=True,
    help="With --plan: wall time on each of these numbers of devices, comma-separated.",
)
@click.option(
    "--cluster",
    default=None,
    metavar="NODESxGPUS",
    help="With --plan: also the wall time on this cluster shape, e.g. 4x8, each run holding --gpus-per-run GPUs.",
)
@click.option(
    "--gpus-per-run",
    default=None,
    metavar="N|KIND=N,...",
    help="With --cluster: GPUs per training run, one number or per kind as ffcv-sweep run takes them "
    "(pretrain=8,finetune=1) [default: 1].",
)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Recipe overrides, e.g. schedule.epochs=60.")
@results_option
@report_user_errors
def cost(
    recipe,
    plan_csv,
    images_per_epoch,
    train,
    images_per_second,
    machine,
    gpus,
    devices,
    cluster,
    gpus_per_run,
    sets,
    results,
):
    """Predicted wall time and device-hours of a whole recipe, or of every run of a plan, from
    measured throughput (H100-hours, say, from an H100's rows)."""
    from ffcv_inat.bench.cost.recipe import (
        Measured,
        describe,
        images_per_epoch as count_images,
        latest_epoch_throughput,
        predict,
        recipe_facts,
    )
    from ffcv_inat.bench.results import read_results

    if (recipe is None) == (plan_csv is None):
        raise UserError("give exactly one of --recipe R and --plan PLAN.csv")
    if plan_csv is not None:
        return _study_cost(plan_csv, machine, parse_int_list(devices, "--devices"), results, cluster, gpus_per_run)
    if cluster is not None or gpus_per_run is not None:
        raise UserError("--cluster and --gpus-per-run go with --plan")
    facts = recipe_facts(recipe, list(sets))
    n = count_images(images_per_epoch, train)
    if gpus is not None:
        check_at_least(("--gpus", gpus, 1))
    if images_per_second is not None:
        if images_per_second <= 0:
            raise UserError(f"--images-per-second must be positive, got {images_per_second}")
        measured = Measured(images_per_second, "given by --images-per-second", 1, machine)
    else:
        measured = latest_epoch_throughput(read_results(results), facts, machine)
    click.echo(describe(facts, predict(facts, n, measured, gpus), measured.source, measured.gpu))


def _study_cost(
    plan_csv: str, machine: str | None, devices: list[int], results: str, cluster: str | None, gpus_per_run: str | None
) -> None:
    from ffcv_inat.sweep.plan import TRAIN_KINDS, read_plan
    from ffcv_inat.sweep.resources import parse_per_kind

    from ffcv_inat.bench.results import read_results
    from ffcv_inat.bench.cost.study import describe_study, parse_cluster, study_costs

    check_at_least(*(("--devices", n, 1) for n in devices))
    shape = parse_cluster(cluster) if cluster is not None else None
    if gpus_per_run is not None and shape is None:
        raise UserError("--gpus-per-run goes with --cluster NODESxGPUS (the shape its runs share)")
    per_run = parse_per_kind("--gpus-per-run", gpus_per_run, 1, kinds=TRAIN_KINDS)
    costs, why = study_costs(read_plan(plan_csv), read_results(results), machine)
    click.echo(describe_study(costs, why, devices, shape, per_run))


COMMANDS = [cost]
