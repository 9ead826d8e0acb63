"""`ffcv-sweep`: plan, run and follow the paper's grid of betons and training runs.

ffcv-sweep plan --grid paper --k 50,100,200,300,398 --seeds 0 --out sweep/plan.csv
ffcv-sweep run sweep/plan.csv [--executor local|slurm|submitit-local] [--gpus-per-run N]
ffcv-sweep run sweep/plan.csv --executor slurm --slurm-partition gpu --gpus-per-run 8 ...
ffcv-sweep status sweep/plan.csv
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from .. import UserError
from ..command_line import CONTEXT_SETTINGS, check_at_least, parse_int_list, report_user_errors
from .executors import DEFAULT_ATTEMPTS, SweepResult, betons_to_verify, run_local
from .progress import grid_estimate, run_progress
from .resources import PerKind, parse_per_kind
from .slurm import DEFAULT_CPUS_PER_TASK, DEFAULT_TIMEOUT_MIN, SlurmOptions, parse_sbatch_line, run_submitit
from .plan import (
    BETON_LAYOUTS,
    DEFAULT_KS,
    SMOKE_FAMILIES,
    SMOKE_KS,
    TRAIN_KINDS,
    GridSpec,
    build_plan,
    plan_storage,
    plan_summary,
    read_plan,
    with_dependencies,
    write_plan,
)
from .state import STATUSES, count_statuses, log_dir, plan_status


@click.group(context_settings=CONTEXT_SETTINGS)
def main():
    """Plan, run and follow the study's grid: betons -> pretraining -> finetuning / linear probe."""


@main.command()
@click.option(
    "--grid",
    type=click.Choice(["paper", "smoke"]),
    default="paper",
    show_default=True,
    help="paper: the study on real data; smoke: a tiny CPU grid on synthetic data it makes itself.",
)
@click.option(
    "--k",
    "ks",
    default=None,
    help=f"Class counts of the A-k, NA-k, R-k subsets [paper: {','.join(map(str, DEFAULT_KS))}; "
    f"smoke: {','.join(map(str, SMOKE_KS))}]. k >= a family's size is dropped for it.",
)
@click.option("--seeds", default="0", show_default=True, help="Class-draw and training seeds (one replicate each).")
@click.option(
    "--families",
    default=None,
    help="Subset families to include [paper: A,NA,R; smoke: R, to stay a few minutes on CPU].",
)
@click.option(
    "--epochs-scale",
    type=float,
    default=1.0,
    show_default=True,
    help="Multiply every schedule's epochs and LR-step interval (0.1: 90 -> 9 epochs).",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where betons (betons/), runs (runs/) and logs go. Default: the folder of --out.",
)
@click.option("--imagenet-dir", default=None, help="ImageNet root (train/, val/). Default: $IMAGENET_DIR.")
@click.option("--inat-dir", default=None, help="iNat-2021 root (train.json, ...). Default: $INAT_DIR.")
@click.option(
    "--full-subsets/--no-full-subsets",
    default=None,
    help="Also pretrain on all of A and NA (their curves' end points) [paper: yes; smoke: no]. "
    "Full ImageNet is always in: it is every figure's reference.",
)
@click.option(
    "--betons",
    "beton_layout",
    type=click.Choice(BETON_LAYOUTS),
    default="views",
    show_default=True,
    help="views: ImageNet written once per split, every other class set a view of it (a small file); "
    "copies: a beton of its own for each class set (4.7 copies of ImageNet per seed on the paper grid).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="ffcv-train --set for every training run, after the grid's own (e.g. data.workers=16).",
)
@click.option(
    "--pretrained",
    "given",
    multiple=True,
    metavar="SET=CHECKPOINT",
    help="Existing weights for a class set's pretraining (repeatable), e.g. all=resnet50-imagenet1k-v1.pth: "
    "that set gets no pretraining run, its finetune and probe start from the file, and ffcv-analyze counts it "
    "as the set's point (saying so). An ffcv-train checkpoint or a torchvision state_dict; nothing is downloaded.",
)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="PLAN.csv to write.")
@report_user_errors
def plan(
    grid,
    ks,
    seeds,
    families,
    epochs_scale,
    work_dir,
    imagenet_dir,
    inat_dir,
    full_subsets,
    beton_layout,
    given,
    sets,
    out,
):
    """Write the grid's runs, with their dependencies, to PLAN.csv."""
    ks = parse_int_list(ks, "--k") if ks is not None else (DEFAULT_KS if grid == "paper" else SMOKE_KS)
    # Each CPU training run costs ~25 s of ffcv/numba start-up whatever its size, so the smoke
    # grid keeps to one family (8 runs); --families A,NA,R gives all three curves (14 runs).
    families = families or ("A,NA,R" if grid == "paper" else SMOKE_FAMILIES)
    seed_list = tuple(parse_int_list(seeds, "--seeds")) if seeds is not None else None
    work = Path(work_dir or Path(out).parent).resolve()
    imagenet_dir = imagenet_dir or os.environ.get("IMAGENET_DIR", "")
    inat_dir = inat_dir or os.environ.get("INAT_DIR", "")
    spec = GridSpec(
        grid=grid,
        ks=tuple(ks),
        seeds=seed_list,
        epochs_scale=epochs_scale,
        work_dir=str(work),
        imagenet_dir=str(Path(imagenet_dir).resolve()) if imagenet_dir else "",
        inat_dir=str(Path(inat_dir).resolve()) if inat_dir else "",
        families=tuple(f.strip() for f in families.split(",") if f.strip()),
        extra_overrides=tuple(sets),
        full_subsets=(grid == "paper") if full_subsets is None else full_subsets,
        betons=beton_layout,
        pretrained=tuple(given_weights(item) for item in given),
    )
    for item in sets:
        if "=" not in item:
            raise UserError(f"--set {item}: expected KEY=VALUE, e.g. data.workers=16")
    rows = build_plan(spec)
    write_plan(rows, out)
    counts = ", ".join(f"{n} {kind}" for kind, n in plan_summary(rows).items())
    click.echo(f"wrote {out}: {len(rows)} runs ({counts}); work dir {work}")
    if grid == "paper":  # the smoke grid's synthetic data is not of these sizes
        click.echo(plan_storage(rows).describe())
        for name, value, env in (("ImageNet", spec.imagenet_dir, "IMAGENET_DIR"), ("iNat", spec.inat_dir, "INAT_DIR")):
            if not value:
                click.echo(f"note: no {name} dir given; write-beton will read ${env} when the betons are written")


@main.command()
@click.argument("plan_csv", type=click.Path(dir_okay=False))
@click.option(
    "--executor",
    type=click.Choice(["local", "slurm", "submitit-local"]),
    default="local",
    show_default=True,
    help="local: one run at a time here; slurm: one SLURM job per run, chained with dependencies; "
    "submitit-local: the slurm code path through submitit's local executor (no SLURM needed).",
)
@click.option(
    "--gpus-per-run",
    default=None,
    metavar="N|KIND=N,...",
    help="GPUs per training run [default: 1], one number or per kind (pretrain=8,finetune=1,linear=1,"
    "scratch=1; kinds not named take 1); 0 trains on CPU (--set device=cpu) and asks SLURM for no GPU. "
    "Betons, and runs whose plan says device=cpu, never ask for one.",
)
@click.option(
    "--procs-per-run",
    default=None,
    metavar="N|KIND=N,...",
    help="Training processes per run, through torchrun (DDP; gloo on CPU), one number or per kind "
    "[default: one per GPU].",
)
@click.option(
    "--attempts",
    type=int,
    default=DEFAULT_ATTEMPTS,
    show_default=True,
    help="Tries per run before it is reported failed (retries resume from the last checkpoint; "
    "a second identical error is not retried).",
)
@click.option("--only", "only", multiple=True, help="Run only this run id (repeatable), with whatever it depends on.")
@click.option(
    "--verify-betons",
    is_flag=True,
    help="Before starting anything, verify every beton the runs read that this sweep does not write "
    "itself (size, sample count, labels, sha256 against its manifest: a full read of each).",
)
@click.option("--slurm-partition", default=None, help="SLURM: partition (sbatch --partition).")
@click.option("--slurm-account", default=None, help="SLURM: account to charge (--account).")
@click.option("--slurm-qos", default=None, help="SLURM: quality of service (--qos).")
@click.option("--slurm-constraint", default=None, help="SLURM: node features, e.g. a GPU type (--constraint).")
@click.option(
    "--gres",
    default=None,
    help="SLURM: a training job's GPU request as sbatch --gres, e.g. gpu:a100:8, instead of "
    "gpu:N from --gpus-per-run (whose N it sets when not given).",
)
@click.option(
    "--cpus-per-task",
    default=None,
    metavar="N|KIND=N,...",
    help="SLURM: CPUs per job (--cpus-per-task: loader workers, beton writers), one number or per kind "
    "(beton=32,pretrain=96) [default: 10].",
)
@click.option(
    "--mem-gb",
    default=None,
    metavar="N|KIND=N,...",
    help="SLURM: memory per job (--mem), one number or per kind [default: the partition's].",
)
@click.option(
    "--timeout-min",
    default=None,
    metavar="N|KIND=N,...",
    help="SLURM: time limit of a job in minutes (--time), one number or per kind; near it a training "
    "job requeues itself and resumes from its last checkpoint [default: beton=720, training 4320].",
)
@click.option(
    "--max-parallel",
    type=int,
    default=None,
    help="At most this many of the sweep's jobs at once (SLURM: like a job array's %N, as N chains "
    "of jobs; default no limit) [submitit-local: 1].",
)
@click.option(
    "--sbatch",
    "sbatch_lines",
    multiple=True,
    metavar="OPTION",
    help="SLURM: an extra #SBATCH line for every job, e.g. --exclusive or --mail-type=END (repeatable).",
)
@click.option(
    "--setup",
    "setup",
    multiple=True,
    metavar="COMMAND",
    help="SLURM: a shell line each job runs before its run, e.g. 'module load cuda' or "
    "'source .venv/bin/activate' (repeatable, in order).",
)
@click.option("--no-wait", is_flag=True, help="slurm: submit and return; follow with `ffcv-sweep status`.")
@click.option(
    "--poll-seconds", type=float, default=30.0, show_default=True, help="slurm: how often a waiting sweep asks squeue."
)
@report_user_errors
def run(
    plan_csv,
    executor,
    gpus_per_run,
    procs_per_run,
    attempts,
    only,
    verify_betons,
    slurm_partition,
    slurm_account,
    slurm_qos,
    slurm_constraint,
    gres,
    cpus_per_task,
    mem_gb,
    timeout_min,
    max_parallel,
    sbatch_lines,
    setup,
    no_wait,
    poll_seconds,
):
    """Run PLAN_CSV in dependency order, skipping runs that are already complete.

    The resource options take one number for every kind of run or KIND=N pairs (kinds: beton,
    pretrain, finetune, linear, scratch), e.g. --gpus-per-run pretrain=8 --cpus-per-task beton=32."""
    check_at_least(("--attempts", attempts, 1), ("--max-parallel", max_parallel, 1))
    procs_per_run = parse_per_kind("--procs-per-run", procs_per_run, None, kinds=TRAIN_KINDS)
    cpus_per_task = parse_per_kind("--cpus-per-task", cpus_per_task, DEFAULT_CPUS_PER_TASK)
    mem_gb = parse_per_kind("--mem-gb", mem_gb, None)
    timeout_min = parse_per_kind(
        "--timeout-min", timeout_min, DEFAULT_TIMEOUT_MIN.default, defaults=DEFAULT_TIMEOUT_MIN.values
    )
    gpus_per_run = _gpus_per_run(gpus_per_run, gres)
    rows = read_plan(plan_csv)
    if only:
        rows = with_dependencies(rows, only)
    for line in sbatch_lines:
        parse_sbatch_line(line)  # a malformed one is an error before anything runs
    if verify_betons:
        _verify_betons(rows)
    if executor == "local":
        res = run_local(rows, attempts=attempts, gpus_per_run=gpus_per_run, procs_per_run=procs_per_run)
    else:
        opts = SlurmOptions(
            partition=slurm_partition,
            account=slurm_account,
            qos=slurm_qos,
            constraint=slurm_constraint,
            gres=gres,
            gpus_per_run=gpus_per_run,
            procs_per_run=procs_per_run,
            cpus_per_task=cpus_per_task,
            mem_gb=mem_gb,
            timeout_min=timeout_min,
            max_parallel=max_parallel,
            sbatch=tuple(sbatch_lines),
            setup=tuple(setup),
        )
        res = run_submitit(
            rows,
            cluster="slurm" if executor == "slurm" else "local",
            opts=opts,
            attempts=attempts,
            wait=not no_wait,
            max_parallel=max_parallel or 1,
            poll_seconds=poll_seconds,
        )
    _report_sweep(res, plan_csv)


def given_weights(item: str) -> tuple[str, str]:
    """--pretrained SET=CHECKPOINT -> (SET, the checkpoint's absolute path), the file checked to exist."""
    name, sep, path = item.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise UserError(f"--pretrained {item}: expected SET=CHECKPOINT, e.g. all=resnet50.pth")
    if not Path(path).is_file():
        raise UserError(f"--pretrained {item}: checkpoint not found: {path}")
    return name.strip(), str(Path(path).resolve())


def _report_sweep(res: SweepResult, plan_csv: str) -> None:
    """Print the sweep's counts, and the runs that did not finish as a ClickException."""
    stopped = f", {len(res.stopped)} stopped" if res.stopped else ""
    click.echo(
        f"sweep: {len(res.ran) - len(res.failed)} ran, {len(res.skipped)} already done, "
        f"{len(res.failed)} failed, {len(res.blocked)} blocked by a failed dependency{stopped}"
    )
    if not res.ok:
        for rid in res.failed:
            click.echo(f"  failed: {rid}")
        for rid in res.stopped:
            click.echo(f"  stopped: {rid}")
        raise click.ClickException(
            f"{len(res.failed) + len(res.stopped)} runs did not finish; see `ffcv-sweep status {plan_csv}`"
        )


def _gpus_per_run(text: str | None, gres: str | None) -> PerKind:
    """--gpus-per-run (one number or per kind), or the GPU count of --gres (gpu:8, gpu:a100:8), or 1.
    --gres is every training job's request, so it takes one --gpus-per-run (or none)."""
    if text is not None and "=" in text:
        if gres:
            raise UserError(
                f"--gres {gres} is every training job's GPU request: give --gpus-per-run one number with it"
            )
        return parse_per_kind("--gpus-per-run", text, 1, minimum=0, kinds=TRAIN_KINDS)
    gpus_per_run = parse_per_kind("--gpus-per-run", text, None, minimum=0).default
    from_gres = None
    if gres:
        parts = gres.split(",")[0].split(":")
        if parts[0] != "gpu":
            from_gres = None
        elif len(parts) > 1 and parts[-1].isdigit():
            from_gres = int(parts[-1])
        else:
            from_gres = 1
    if gpus_per_run is None:
        return PerKind(from_gres if from_gres is not None else 1)
    if from_gres is not None and from_gres != gpus_per_run:
        raise UserError(f"--gres {gres} asks for {from_gres} GPUs but --gpus-per-run is {gpus_per_run}")
    return PerKind(gpus_per_run)


def _verify_betons(rows) -> None:
    from ..beton import verify_betons

    paths = betons_to_verify(rows)
    if not paths:
        click.echo("--verify-betons: nothing to verify (the runs to do read only betons this sweep writes)")
        return
    click.echo(f"verifying {len(paths)} betons the runs read (a full read of each) ...")
    start = time.time()
    verify_betons(paths, progress=True)
    click.echo(f"verified {len(paths)} betons in {time.time() - start:.1f}s: each matches its manifest")


@main.command()
@click.argument("plan_csv", type=click.Path(dir_okay=False))
@click.option("--all", "show_all", is_flag=True, help="List every run, not only the failed and running ones.")
@report_user_errors
def status(plan_csv, show_all):
    """Show done / running / queued / failed / pending per kind of run, each running run's epoch,
    speed and ETA, and the time the grid still needs (from its finished runs)."""
    statuses = plan_status(read_plan(plan_csv))
    counts = count_statuses(statuses)
    header = f"{'kind':<10}" + "".join(f"{s:>9}" for s in STATUSES) + f"{'total':>9}"
    click.echo(header)
    for kind, c in counts.items():
        click.echo(f"{kind:<10}" + "".join(f"{c[s]:>9}" for s in STATUSES) + f"{sum(c.values()):>9}")
    totals = {s: sum(c[s] for c in counts.values()) for s in STATUSES}
    click.echo(f"{'all':<10}" + "".join(f"{totals[s]:>9}" for s in STATUSES) + f"{len(statuses):>9}")
    running = {
        s.row.run_id: run_progress(s.row) for s in statuses if s.status == "running" and s.row.kind in TRAIN_KINDS
    }
    click.echo(grid_estimate(statuses, running).describe())
    for s in statuses:
        if show_all or s.status in ("failed", "running", "queued") or (s.status == "pending" and s.detail):
            extra = f" ({s.detail})" if s.detail else ""
            tries = f", {s.attempts} attempts" if s.status == "failed" else ""
            where = f": {running[s.row.run_id].describe()}" if s.row.run_id in running else ""
            click.echo(f"{s.status:<8} {s.row.run_id}{where}{tries}{extra}")
            if s.status == "failed":
                click.echo(f"         logs: {log_dir(s.row)}/stdout.log, stderr.log")
            if s.job_logs and s.status != "done":
                out, err = s.job_logs
                click.echo(f"         job {s.job_id} log: {out}, {err.name}")


if __name__ == "__main__":
    main()
