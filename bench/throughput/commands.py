"""The throughput benchmarks' subcommands: `ffcv-bench loader`, `model`, `epoch` and `train-run`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

from ffcv_inat import UserError
from ffcv_inat.command_line import check_at_least, parse_int_list, report_user_errors
from ffcv_inat.config import CROPS
from ffcv_inat.environment import PRECISIONS

from ffcv_inat.bench.machine import environment
from ffcv_inat.bench.options import command_line, decode_option, echo_err, parse_decodes, results_option, write_rows
from ffcv_inat.bench.results import recorded_path, to_record
from ffcv_inat.bench.throughput.loader import MIN_ROUND_SECONDS
from ffcv_inat.bench.throughput.pipelines import PIPELINES


@click.command(short_help="Images/s of the ffcv loader vs DALI's and PyTorch's, and the CPU ceiling.")
@click.option(
    "--images",
    "images_dir",
    default=None,
    type=click.Path(),
    help="ImageFolder tree DIR/<class>/<image> (e.g. IMAGENET/train). Not needed for --pipeline ffcv "
    "alone on an existing --beton.",
)
@click.option(
    "--beton",
    type=click.Path(dir_okay=False),
    default=None,
    help="The same images as a beton; written here from --images if missing. "
    "Default: written to a temporary folder and removed afterwards.",
)
@click.option(
    "--res", "res_list", default="160,192,224", show_default=True, help="Output resolutions, comma-separated."
)
@click.option(
    "--workers",
    type=int,
    default=8,
    show_default=True,
    help="Workers of both pipelines (ffcv threads, DataLoader processes).",
)
@click.option("--batch", type=int, default=256, show_default=True)
@click.option(
    "--epochs",
    type=int,
    default=3,
    show_default=True,
    help="Measured rounds per pipeline and resolution, each of whole epochs lasting --min-seconds.",
)
@click.option(
    "--warmup",
    type=int,
    default=1,
    show_default=True,
    help="Warm-up rounds before them, not counted; more follow until two agree within 10%.",
)
@click.option(
    "--min-seconds",
    type=float,
    default=MIN_ROUND_SECONDS,
    show_default=True,
    help="Shortest measured round: whole epochs, going over a small beton again, until this long.",
)
@click.option(
    "--label",
    default=None,
    help="What the images are, kept in the rows (settings.images_label), e.g. 'real photos' or 'synthetic'.",
)
@click.option(
    "--ceiling/--no-ceiling",
    default=True,
    show_default=True,
    help="Also time this machine's decode and decode + resize of the beton's JPEGs on --workers threads.",
)
@click.option(
    "--pipeline",
    "pipelines",
    type=click.Choice(PIPELINES),
    multiple=True,
    help="Run only this pipeline (repeatable). Default: ffcv, dali (when installed) and pytorch.",
)
@click.option(
    "--crop",
    "crops",
    type=click.Choice(CROPS),
    multiple=True,
    help="The ffcv pipeline's training crop decoder (repeatable: each is timed, interleaved): seeded "
    "(ours, a function of seed, epoch and image) or ffcv (ffcv's stock decoder + flip). "
    "Default: seeded, the trainer's default.",
)
@decode_option(
    "cpu",
    "Where the ffcv pipeline decodes JPEGs, each path timed, interleaved: cpu (ffcv's workers), "
    "gpu (the GPU data path: workers copy bytes, the device decodes), auto (gpu on CUDA).",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default=None,
    help="Where the ffcv pipeline's batches land, normalised as the trainer takes them: cpu or cuda. "
    "Default: cuda when --decode asks for the GPU path "
    "and CUDA is present, else cpu.",
)
@results_option
@click.pass_context
@report_user_errors
def loader(
    ctx,
    images_dir,
    beton,
    res_list,
    workers,
    batch,
    epochs,
    warmup,
    min_seconds,
    label,
    ceiling,
    pipelines,
    crops,
    decode_opts,
    device,
    results,
):
    """Images/s of the toolkit's FFCV pipeline (per decode path) vs NVIDIA DALI's CPU pipeline and
    the standard PyTorch one, on the same images, each in its own process, with the CPU cores each
    keeps busy, the memory each adds, and this machine's ceiling."""
    from ffcv_inat.bench.throughput.loader import loader_rows

    resolutions = parse_int_list(res_list, "--res")
    check_at_least(
        ("--workers", workers, 1),
        ("--batch", batch, 1),
        ("--epochs", epochs, 1),
        ("--warmup", warmup, 0),
        ("--min-seconds", min_seconds, 0),
        *(("--res", r, 16) for r in resolutions),
    )
    pipelines = list(dict.fromkeys(pipelines)) or default_pipelines()
    crops = list(dict.fromkeys(crops)) or ["seeded"]
    dev, decodes = _loader_decodes(parse_decodes(decode_opts) or ["cpu"], device, pipelines)
    if images_dir is None and (beton is None or pipelines != ["ffcv"]):
        raise UserError("--images DIR is needed, unless --pipeline ffcv alone times an existing --beton")
    with tempfile.TemporaryDirectory(prefix="ffcv-bench-") as tmp:
        source, beton_path, manifest = _bench_source(images_dir, beton, batch, Path(tmp))
        echo_err(
            f"{manifest.num_images} images, {manifest.num_classes} classes; batch {batch}, {workers} workers, "
            f"{warmup}+ warm-up + {epochs} measured rounds of >= {min_seconds:g} s per pipeline and resolution; "
            f"pipelines {', '.join(pipelines)}{' and the ceiling' if ceiling else ''}, each in its own process"
        )
        measured, top = _measure_loaders(
            source, beton_path, manifest, resolutions, batch, workers, warmup, epochs, pipelines, crops, decodes,
            dev, min_seconds, ceiling,
        )  # fmt: skip
    run = {
        "images": recorded_path((source.root if source else Path(beton)).resolve()),
        "num_images": manifest.num_images,
        "num_classes": manifest.num_classes,
        "beton": beton and recorded_path(Path(beton).resolve()),
        "images_label": label,
        "measured_rounds": epochs,
        "min_round_seconds": min_seconds,
    }
    env, command = environment(), command_line(ctx)
    records = [to_record(r, command, env) for r in loader_rows(measured, run, top)]
    write_rows(results, records)
    _print_loader(records, measured, crops if "ffcv" in pipelines else [None], top)


def _loader_decodes(asked: list[str], device: str | None, pipelines: list[str]):
    """(the device the ffcv pipeline's batches land on, its decode paths, resolved); DALI asked
    for without it installed, or gpu without CUDA, is a one-line error."""
    import torch

    from ffcv_inat.environment import resolve_device
    from ffcv_inat.loader import resolve_decode

    from ffcv_inat.bench.throughput.pipelines import DALI_MISSING, dali_available

    if "dali" in pipelines and not dali_available():
        raise UserError(DALI_MISSING)
    if device is None:
        device = "cuda" if torch.cuda.is_available() and set(asked) != {"cpu"} else "cpu"
    dev = resolve_device(device, "--device")
    return dev, list(dict.fromkeys(resolve_decode(d, dev) for d in asked))


def _measure_loaders(
    source, beton_path, manifest, resolutions, batch, workers, warmup, epochs, pipelines, crops, decodes, dev,
    min_seconds, ceiling,
):  # fmt: skip
    """Every pipeline's figures (run_loader_bench) and this machine's ceiling (None without --ceiling)."""
    from ffcv_inat.bench.throughput.ceiling import MIN_ROUND_SECONDS as CEILING_ROUND_SECONDS, CeilingProcess
    from ffcv_inat.bench.throughput.loader import run_loader_bench

    # The ceiling's process starts first and makes itself ready while the loaders' start.
    rounds = (
        CeilingProcess(beton_path, workers, min(min_seconds, CEILING_ROUND_SECONDS), manifest=manifest)
        if ceiling
        else None
    )
    try:
        measured = run_loader_bench(
            source, beton_path, resolutions, batch, workers, warmup, epochs, pipelines, echo=echo_err, crops=crops,
            decodes=decodes, device=dev, min_seconds=min_seconds, ceiling=rounds, manifest=manifest,
        )  # fmt: skip
        top = (
            rounds.finish(dev if "gpu" in decodes else None, batch) if rounds is not None and rounds.opened() else None
        )
    finally:
        if rounds is not None:
            rounds.close()
    return measured, top


def default_pipelines() -> list[str]:
    """ffcv, DALI (when installed: else a line says how) and PyTorch."""
    from ffcv_inat.bench.throughput.pipelines import dali_available

    if dali_available():
        return list(PIPELINES)
    echo_err("DALI is not installed, so its CPU pipeline is not measured: pip install 'ffcv-inat[dali]'")
    return [p for p in PIPELINES if p != "dali"]


def _bench_source(images_dir: str | None, beton: str | None, batch: int, tmp: Path):
    """(the ImageFolder's images matched to the beton, or None without --images; the beton,
    written from the images when missing; its manifest, checked against it once for every loader)."""
    from ffcv_inat.beton import check_beton

    from ffcv_inat.bench.data.image_folder import list_image_folder, matched_to_beton, write_source_beton

    if images_dir is None:
        manifest = check_beton(beton)
        if manifest.num_images < batch:
            raise UserError(f"--batch {batch} is larger than the {manifest.num_images} images: no full batch")
        return None, Path(beton), manifest
    source = list_image_folder(images_dir)
    if len(source.samples) < batch:  # checked before the beton is written, to fail fast
        raise UserError(f"--batch {batch} is larger than the {len(source.samples)} images: no full batch")
    if beton is None or not Path(beton).exists():
        beton_path = Path(beton) if beton else tmp / "bench.beton"
        echo_err(f"writing {len(source.samples)} images from {source.root} to {beton_path}")
        manifest = write_source_beton(source, beton_path)
    else:
        beton_path = Path(beton)
        manifest = check_beton(beton_path)
    return matched_to_beton(source, manifest), beton_path, manifest


def _print_loader(rows: list[dict], measured, tables: list, top) -> None:
    """A table per crop decoder (a column per decode path), the crop comparison, the GPU path's
    decode counts, the decode verdict, and each figure's fraction of this machine's ceiling."""
    from ffcv_inat.bench.throughput.ceiling import ceiling_lines
    from ffcv_inat.bench.report import decode_conclusion, loader_table

    for crop in tables:
        if len(tables) > 1:
            click.echo(f"ffcv crop decoder: {crop}")
        click.echo(loader_table([r for r in rows if json.loads(r["settings"]).get("crop") in (crop, None)]))
    if len(tables) > 1:
        click.echo(_crop_comparison(measured))
    for m in measured:
        if m.decode_counts is not None:
            click.echo(gpu_path_line(m.res, m.decode_counts, m.nvjpeg_backend))
    for line in decode_conclusion(rows) + (ceiling_lines(measured, top) if top else []) + peer_lines(measured, top):
        click.echo(line)


def peer_lines(measured, top=None) -> list[str]:
    """One line per ffcv figure: against DALI's and PyTorch's at its resolution, and the
    ceiling's; and the memory each pipeline added."""
    from ffcv_inat.bench.stats import ratio

    at = {(m.pipeline, m.res): m.measured.median for m in measured if m.pipeline != "ffcv"}
    lines = []
    for m in measured:
        if m.pipeline != "ffcv":
            continue
        parts = [
            f"{ratio(m.measured.median, at[(peer, m.res)]):.2f}x {label}"
            for peer, label in (("dali", "DALI (CPU)"), ("pytorch", "PyTorch"))
            if (peer, m.res) in at
        ]
        if top is not None:
            parts.append(f"{m.measured.median / top.decode_resize[m.res].median:.2f} of the ceiling")
        if parts:
            lines.append(f"res {m.res} ffcv {m.crop}/{m.decode}: {m.measured.median:,.0f} img/s = " + ", ".join(parts))
    several = len({m.res for m in measured}) > 1
    memory = [
        f"{m.pipeline}{f' {m.crop}/{m.decode}' if m.decode else ''}{f' at {m.res} px' if several else ''} "
        f"{m.memory_mb:,.0f} MiB"
        for m in measured
        if m.memory_mb is not None
    ]
    if memory:
        lines.append("anonymous memory each loader added to its process (and its workers'): " + ", ".join(memory))
    return lines


def gpu_path_line(res: int, counts: dict, backend: str | None) -> str:
    """How the GPU path decoded its samples (every epoch it ran, warm-up included) and on which
    nvJPEG backend."""
    from ffcv_inat.bench.report import describe_decode_counts

    return (
        f"GPU path at res {res}, samples of every epoch run: {describe_decode_counts(counts)}; "
        f"nvJPEG backend: {backend or 'none (the path ran on the CPU)'}"
    )


def _crop_comparison(measured) -> str:
    """Both crop decoders' median (min-max) images/s at each resolution (CPU decode, the one
    path both have), and ours / stock."""
    by = {(m.res, m.crop): m.measured for m in measured if m.pipeline == "ffcv" and m.decode == "cpu"}
    lines = ["ffcv crop decoders, median (min-max) images/s"]
    for res in sorted({res for res, _ in by}):
        ours, stock = by[(res, "seeded")], by[(res, "ffcv")]
        lines.append(
            f"res {res}: seeded {ours.median:,.0f} ({ours.min:,.0f}-{ours.max:,.0f}), "
            f"ffcv {stock.median:,.0f} ({stock.min:,.0f}-{stock.max:,.0f}); "
            f"seeded / ffcv = {ours.median / stock.median:.3f}x"
        )
    return "\n".join(lines)


@click.command(short_help="ResNet-50 training-step images/s and peak memory.")
@click.option("--res", "res_list", default="224", show_default=True, help="Input resolutions, comma-separated.")
@click.option("--batch", type=int, default=256, show_default=True)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=None,
    help="Autocast dtype. Default: the trainer's: bf16 on a GPU (fp16 where bf16 is missing), fp32 on CPU.",
)
@click.option("--channels-last/--no-channels-last", default=True, show_default=True)
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model (warm-up steps absorb compilation).")
@click.option("--blurpool", is_flag=True, help="The trainer's BlurPool option (a blur before each strided conv).")
@click.option("--steps", type=int, default=50, show_default=True, help="Measured steps.")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed steps before them.")
@click.option("--device", default=None, help="cpu or cuda. Default: cuda if present.")
@results_option
@click.pass_context
@report_user_errors
def model(ctx, res_list, batch, precision, channels_last, compile_, blurpool, steps, warmup, device, results):
    """ResNet-50 training-step throughput on synthetic tensors already on the device: the
    trainer's own step (default SGD settings) on batches shaped as its loader delivers them."""
    from ffcv_inat.environment import resolve_device

    from ffcv_inat.bench.throughput.model import (
        ModelRow,
        bench_config,
        prepare_step,
        resolve_precision,
        run_model_bench,
    )
    from ffcv_inat.bench.report import model_table

    resolutions = parse_int_list(res_list, "--res")
    dev = resolve_device(device, "--device")
    precision = resolve_precision(precision, dev)
    check_at_least(
        ("--batch", batch, 1), ("--steps", steps, 1), ("--warmup", warmup, 0), *(("--res", r, 32) for r in resolutions)
    )
    if compile_ and warmup < 1:
        raise UserError("--compile needs --warmup of at least 1: the first step compiles")
    # One model and step for all resolutions, as progressive resizing gets in the trainer.
    cfgs = [bench_config(res, batch, precision, channels_last, compile_, blurpool) for res in resolutions]
    step = prepare_step(cfgs[0], dev)
    command = command_line(ctx)
    rows = []
    for cfg in cfgs:
        m = run_model_bench(cfg, steps, warmup, dev, step=step, echo=echo_err)
        rows.append(to_record(ModelRow.of(m, blurpool), command))
        write_rows(results, rows[-1:])  # each as it comes: a run cut short (timeout) keeps what it measured
    click.echo(model_table(rows))


@click.command(short_help="The trainer end to end: epoch seconds, images/s, the bottleneck.")
@click.option("--recipe", required=True, help="Bundled recipe name (pretrain_90ep.yaml) or a YAML path.")
@click.option(
    "--train", "train", required=True, type=click.Path(dir_okay=False), help="Train beton (with its manifest)."
)
@click.option(
    "--max-steps",
    type=int,
    default=None,
    help="Steps per epoch; a whole epoch's seconds are then extrapolated from them. Default: whole epochs.",
)
@click.option("--epochs", type=int, default=1, show_default=True, help="Measured epochs.")
@click.option(
    "--warmup",
    type=int,
    default=1,
    show_default=True,
    help="Epochs before them, not counted (loader compilation, cudnn autotuning, torch.compile).",
)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Passed to ffcv-train, e.g. compile=true.")
@click.option(
    "--out",
    "run_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the trainer's run dir here. Default: a temporary one, removed afterwards.",
)
@click.option(
    "--compare/--no-compare",
    default=True,
    show_default=True,
    help="Also time the loader alone and the model alone, for the bottleneck verdict.",
)
@decode_option(
    None,
    "Decode path(s) to run the trainer with (data.decode), each its own run, row and verdict: "
    "cpu, gpu (the GPU data path), auto. Default: the recipe's data.decode.",
)
@results_option
@click.pass_context
@report_user_errors
def epoch(ctx, recipe, train, max_steps, epochs, warmup, sets, run_dir, compare, decode_opts, results):
    """The real trainer end to end: seconds per epoch, images/s, and what limits them; with
    several --decode paths, which one to use on this machine."""
    from ffcv_inat.bench.report import decode_conclusion
    from ffcv_inat.bench.throughput.epoch import EpochRow, run_epoch_bench

    check_at_least(("--epochs", epochs, 1), ("--warmup", warmup, 0))
    if max_steps is not None:
        check_at_least(("--max-steps", max_steps, 1))
    env = environment()  # one timestamp for the run's rows: `ffcv-bench report` groups them by it
    measured, rows = [], []
    for r in run_epoch_bench(
        recipe,
        train,
        list(sets),
        warmup,
        epochs,
        max_steps,
        run_dir,
        compare,
        echo=echo_err,
        echo_raw=lambda text: click.echo(text, err=True, nl=False),
        decodes=parse_decodes(decode_opts) or None,
    ):
        measured.append(r)
        rows.append(to_record(EpochRow.of(r, train), command_line(ctx), env))
        write_rows(results, rows[-1:])  # each as it comes: a later decode path that fails keeps this one
    click.echo("\n\n".join(r.describe() for r in measured))
    for r in measured:
        if r.loader_counts is not None:
            click.echo(gpu_path_line(r.res, r.loader_counts, r.nvjpeg_backend) + " (loader alone)")
    for line in decode_conclusion(rows):
        click.echo(line)


@click.command("train-run", short_help="Epoch seconds, images/s and peak memory an ffcv-train run logged.")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--label", default=None, help="Names the run in the printout and the record (e.g. compile=true).")
@click.option(
    "--rows", type=click.Path(dir_okay=False), default=None, help="Append the record to this JSON-lines file."
)
@report_user_errors
def train_run(run_dir, label, rows):
    """The speed an ffcv-train run recorded in RUN_DIR's log.jsonl and summary.json: epoch
    seconds, images/s after the first epoch, peak GPU memory."""
    from ffcv_inat.bench.throughput.train_run import describe, train_throughput

    r = train_throughput(run_dir, label)
    click.echo(describe(r))
    if rows:
        with open(rows, "a") as f:
            f.write(json.dumps(r) + "\n")


@click.command(
    "view-cost", short_help="A view's training loader against its standalone copy: start-up, memory, images/s."
)
@click.argument("view", type=click.Path(dir_okay=False))
@click.option(
    "--copy",
    "copy",
    required=True,
    type=click.Path(dir_okay=False),
    help="A standalone beton of the view's samples (e.g. ffcv-bench prepare imagenet-sized --subset).",
)
@click.option("--rounds", type=int, default=5, show_default=True, help="Fresh processes per loader, interleaved.")
@click.option("--res", type=int, default=32, show_default=True, help="Training crop size.")
@click.option("--batch", type=int, default=256, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="ffcv loader threads.")
@click.option(
    "--min-seconds",
    type=float,
    default=MIN_ROUND_SECONDS,
    show_default=True,
    help="Warm-up and measured round, each whole epochs lasting at least this long.",
)
@results_option
@click.pass_context
@report_user_errors
def view_cost(ctx, view, copy, rounds, res, batch, workers, min_seconds, results):
    """What a training loader on VIEW costs against one on --copy (the same samples as a beton
    of their own): seconds to the first batch, peak RSS added, images/s."""
    from ffcv_inat.beton import check_beton, is_view
    from ffcv_inat.bench.throughput.view_cost import describe, same_samples, time_view_and_copy, view_cost_rows

    check_at_least(("--rounds", rounds, 1), ("--res", res, 8), ("--batch", batch, 1), ("--workers", workers, 1))
    if not is_view(view):
        raise UserError(f"{view}: not a view (NAME.view.json)")
    view_m, copy_m = check_beton(view), check_beton(copy)
    same_samples(view_m, copy_m)
    if view_m.num_images < batch:
        raise UserError(f"--batch {batch} is larger than the view's {view_m.num_images} images: no full batch")
    env = environment()
    measured = time_view_and_copy(Path(view), Path(copy), res, batch, workers, rounds, min_seconds, echo=echo_err)
    parent_samples = view_m.view.integrity.num_samples
    rows = view_cost_rows(
        measured,
        {"res": res, "batch": batch, "workers": workers, "min_round_seconds": min_seconds},
        {"view": recorded_path(Path(view).resolve()), "copy": recorded_path(Path(copy).resolve())},
        {"view": (view_m.num_images, parent_samples), "copy": (copy_m.num_images, copy_m.num_images)},
    )
    write_rows(results, [to_record(r, command_line(ctx), env) for r in rows])
    click.echo(describe(rows))


@click.command("write-speed", short_help="write-beton's images/s, source JPEGs stored as they come vs re-encoded.")
@click.option(
    "--images", "images_dir", required=True, type=click.Path(file_okay=False), help="ImageFolder tree of JPEGs."
)
@click.option("--rounds", type=int, default=3, show_default=True, help="Writes each way, interleaved.")
@click.option("--workers", type=int, default=2, show_default=True, help="Writer workers.")
@click.option("--max-res", type=int, default=512, show_default=True, help="Longest side stored.")
@report_user_errors
def write_speed(images_dir, rounds, workers, max_res):
    """write_beton end to end over --images, each source JPEG that is baseline, colour and within
    --max-res stored byte for byte (the iNat writer's way), against every image re-encoded."""
    from ffcv_inat.bench.throughput.write_speed import run_write_speed

    check_at_least(("--rounds", rounds, 1), ("--workers", workers, 1), ("--max-res", max_res, 8))
    speeds = run_write_speed(images_dir, rounds, workers, max_res, echo=echo_err)
    for s in speeds:
        r = s.images_per_second
        click.echo(
            f"{s.way:13s} {r.median:,.0f} img/s ({r.min:,.0f}-{r.max:,.0f}, {r.n} writes) of {s.images:,} images, "
            f"{s.stored_as_they_came:,} stored as they came, beton {s.beton_bytes / 1e6:,.1f} MB"
        )
    click.echo(
        f"as they come / re-encoded: {speeds[0].images_per_second.median / speeds[1].images_per_second.median:.2f}x"
    )


COMMANDS = [loader, model, epoch, train_run, view_cost, write_speed]
