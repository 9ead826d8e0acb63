"""`ffcv-bench`: loader, model and end-to-end throughput, cost predictions, and the results table.

Every measurement appends rows to bench/results/results.csv (or --results PATH) with the
machine and versions it ran on; `ffcv-bench report` prints them and draws the plots.
"""
from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path

import click

from ffcv_inat import UserError
from ffcv_inat.command_line import CONTEXT_SETTINGS, parse_int_list, report_user_errors
from ffcv_inat.config import CROPS, DECODES
from ffcv_inat.environment import PRECISIONS

from .loader_bench import MIN_ROUND_SECONDS
from .results import DEFAULT_RESULTS, append_rows, make_row, recorded_path


def _echo_err(msg: str) -> None:
    click.echo(msg, err=True)


def command_line(ctx: click.Context) -> str:
    """The command as it could be retyped, from the parsed options (recorded in every row);
    paths as `recorded_path` names them, never a machine's absolute path."""
    parts = ["ffcv-bench", ctx.info_name]
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or p.name in ("results",):
            continue
        v = ctx.params.get(p.name)
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


def results_option(fn):
    return click.option("--results", "results", type=click.Path(dir_okay=False), default=str(DEFAULT_RESULTS),
                        show_default="bench/results/results.csv", help="CSV to append the rows to.")(fn)


def decode_option(default: str | None, help: str):
    """--decode: comma-separated or repeated values of DECODES."""
    return click.option("--decode", "decode_opts", multiple=True, default=(default,) if default else (),
                        show_default=default is not None, metavar="|".join(DECODES) + "[,...]", help=help)


def parse_decodes(values) -> list[str]:
    """--decode cpu,gpu --decode auto -> ["cpu", "gpu", "auto"] (each once, in order given)."""
    items = [v.strip() for value in values for v in value.split(",") if v.strip()]
    for v in items:
        if v not in DECODES:
            raise UserError(f"--decode takes {', '.join(DECODES)} (comma-separated or repeated), got {v!r}")
    return list(dict.fromkeys(items))


def _write_rows(results: str, rows: list[dict]) -> None:
    path = append_rows(results, rows)
    _echo_err(f"appended {len(rows)} row{'s' if len(rows) != 1 else ''} to {path}")


@click.group(context_settings=CONTEXT_SETTINGS)
def main():
    """Benchmarks of the toolkit: loader, model, end-to-end epoch, and cost predictions.

    \b
    ffcv-bench loader --images IMAGENET/train --res 160,192,224 --workers 16 --decode cpu,gpu
    ffcv-bench model --res 224 --batch 256 --precision bf16 --compile
    ffcv-bench epoch --recipe pretrain_90ep.yaml --train A.beton --max-steps 100 --decode cpu,gpu
    ffcv-bench cost --recipe pretrain_90ep.yaml --train A.beton
    ffcv-bench cost --plan plan.csv --machine H100 --devices 8
    ffcv-bench report
    """


@main.command()
@click.option("--images", "images_dir", default=None, type=click.Path(),
              help="ImageFolder tree DIR/<class>/<image> (e.g. IMAGENET/train). Not needed for --pipeline ffcv "
                   "alone on an existing --beton.")
@click.option("--beton", type=click.Path(dir_okay=False), default=None,
              help="The same images as a beton; written here from --images if missing. "
                   "Default: written to a temporary folder and removed afterwards.")
@click.option("--res", "res_list", default="160,192,224", show_default=True, help="Output resolutions, comma-separated.")
@click.option("--workers", type=int, default=8, show_default=True, help="Workers of both pipelines (ffcv threads, DataLoader processes).")
@click.option("--batch", type=int, default=256, show_default=True)
@click.option("--epochs", type=int, default=3, show_default=True,
              help="Measured rounds per pipeline and resolution, each of whole epochs lasting --min-seconds.")
@click.option("--warmup", type=int, default=1, show_default=True,
              help="Warm-up rounds before them, not counted; more follow until two agree within 10%.")
@click.option("--min-seconds", type=float, default=MIN_ROUND_SECONDS, show_default=True,
              help="Shortest measured round: whole epochs, going over a small beton again, until this long.")
@click.option("--label", default=None,
              help="What the images are, kept in the rows (settings.images_label), e.g. 'real photos' or 'synthetic'.")
@click.option("--ceiling/--no-ceiling", default=True, show_default=True,
              help="Also time this machine's decode and decode + resize of the beton's JPEGs on --workers threads.")
@click.option("--pipeline", "pipelines", type=click.Choice(["ffcv", "dali", "pytorch"]), multiple=True,
              help="Run only this pipeline (repeatable). Default: ffcv, dali (when installed) and pytorch.")
@click.option("--crop", "crops", type=click.Choice(CROPS), multiple=True,
              help="The ffcv pipeline's training crop decoder (repeatable: each is timed, interleaved): seeded "
                   "(ours, a function of seed, epoch and image) or ffcv (ffcv's stock decoder + flip). "
                   "Default: seeded, the trainer's default.")
@decode_option("cpu", "Where the ffcv pipeline decodes JPEGs, each path timed, interleaved: cpu (ffcv's workers), "
                      "gpu (the GPU data path: workers copy bytes, the device decodes), auto (gpu on CUDA).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="Where the ffcv pipeline's batches land, normalised as the trainer takes them: cpu or cuda. Default: cuda when --decode asks for the GPU path "
                   "and CUDA is present, else cpu.")
@results_option
@click.option("--gpu-path-on-cpu", is_flag=True, hidden=True,
              help="Tests: let data.decode gpu run the GPU path's code on the CPU.")
@click.pass_context
@report_user_errors
def loader(ctx, images_dir, beton, res_list, workers, batch, epochs, warmup, min_seconds, label, ceiling, pipelines,
           crops, decode_opts, device, results, gpu_path_on_cpu):
    """Images/s of the toolkit's FFCV pipeline (per decode path) vs NVIDIA DALI's CPU pipeline and
    the standard PyTorch one, on the same images, each in its own process, with the CPU cores each
    keeps busy, the memory each adds, and this machine's ceiling."""
    import torch

    from ffcv_inat.environment import resolve_device
    from ffcv_inat.loader import resolve_decode

    from .ceiling import MIN_ROUND_SECONDS as CEILING_ROUND_SECONDS, CeilingProcess
    from .loader_bench import DALI_MISSING, dali_available, run_loader_bench

    resolutions = parse_int_list(res_list, "--res")
    _check_at_least(("--workers", workers, 1), ("--batch", batch, 1), ("--epochs", epochs, 1), ("--warmup", warmup, 0),
                    ("--min-seconds", min_seconds, 0), *(("--res", r, 16) for r in resolutions))
    pipelines = list(dict.fromkeys(pipelines)) or default_pipelines()
    if "dali" in pipelines and not dali_available():
        raise UserError(DALI_MISSING)
    crops = list(dict.fromkeys(crops)) or ["seeded"]
    asked = parse_decodes(decode_opts) or ["cpu"]
    if device is None:
        device = "cuda" if torch.cuda.is_available() and set(asked) != {"cpu"} else "cpu"
    dev = resolve_device(device, "--device")
    decodes = list(dict.fromkeys(resolve_decode(d, dev, gpu_path_on_cpu=gpu_path_on_cpu) for d in asked))  # gpu without CUDA: its one-line error
    if images_dir is None and (beton is None or pipelines != ["ffcv"]):
        raise UserError("--images DIR is needed, unless --pipeline ffcv alone times an existing --beton")
    with tempfile.TemporaryDirectory(prefix="ffcv-bench-") as tmp:
        source, beton_path, manifest = _bench_source(images_dir, beton, batch, Path(tmp))
        _echo_err(f"{manifest.num_images} images, {manifest.num_classes} classes; batch {batch}, {workers} workers, "
                  f"{warmup}+ warm-up + {epochs} measured rounds of >= {min_seconds:g} s per pipeline and resolution; "
                  f"pipelines {', '.join(pipelines)}{' and the ceiling' if ceiling else ''}, each in its own process")
        # The ceiling's process starts first and makes itself ready while the loaders' start.
        rounds = (CeilingProcess(beton_path, workers, min(min_seconds, CEILING_ROUND_SECONDS), manifest=manifest)
                  if ceiling else None)
        try:
            measured = run_loader_bench(source, beton_path, resolutions, batch, workers, warmup, epochs, pipelines,
                                        echo=_echo_err, crops=crops, decodes=decodes, device=dev,
                                        min_seconds=min_seconds, ceiling=rounds, manifest=manifest)
            top = (rounds.finish(dev if "gpu" in decodes else None, batch)
                   if rounds is not None and rounds.opened() else None)
        finally:
            if rounds is not None:
                rounds.close()
    settings = {"images": recorded_path((source.root if source else Path(beton)).resolve()),
                "num_images": manifest.num_images, "num_classes": manifest.num_classes,
                "beton": beton and recorded_path(Path(beton).resolve()),
                "images_label": label, "measured_rounds": epochs, "min_round_seconds": min_seconds}
    rows = _loader_rows(measured, command_line(ctx), settings, top)
    _write_rows(results, rows)
    _print_loader(rows, measured, crops if "ffcv" in pipelines else [None], top)


def default_pipelines() -> list[str]:
    """ffcv, DALI (when installed: else a line says how) and PyTorch."""
    from .loader_bench import dali_available

    if dali_available():
        return ["ffcv", "dali", "pytorch"]
    _echo_err("DALI is not installed, so its CPU pipeline is not measured: pip install 'ffcv-inat[dali]'")
    return ["ffcv", "pytorch"]


def _bench_source(images_dir: str | None, beton: str | None, batch: int, tmp: Path):
    """(the ImageFolder's images matched to the beton, or None without --images; the beton,
    written from the images when missing; its manifest, checked against it once for every loader)."""
    from ffcv_inat.beton import check_beton

    from .loader_bench import list_image_folder, matched_to_beton, write_source_beton

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
        _echo_err(f"writing {len(source.samples)} images from {source.root} to {beton_path}")
        manifest = write_source_beton(source, beton_path)
    else:
        beton_path = Path(beton)
        manifest = check_beton(beton_path)
    return matched_to_beton(source, manifest), beton_path, manifest


def _print_loader(rows: list[dict], measured, tables: list, top) -> None:
    """A table per crop decoder (a column per decode path), the crop comparison, the GPU path's
    decode counts, the decode verdict, and each figure's fraction of this machine's ceiling."""
    from .ceiling import ceiling_lines
    from .report import decode_conclusion, loader_table

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
    from .stats import ratio

    at = {(m.pipeline, m.res): m.measured.median for m in measured if m.pipeline != "ffcv"}
    lines = []
    for m in measured:
        if m.pipeline != "ffcv":
            continue
        parts = [f"{ratio(m.measured.median, at[(peer, m.res)]):.2f}x {label}"
                 for peer, label in (("dali", "DALI (CPU)"), ("pytorch", "PyTorch")) if (peer, m.res) in at]
        if top is not None:
            parts.append(f"{m.measured.median / top.decode_resize[m.res].median:.2f} of the ceiling")
        if parts:
            lines.append(f"res {m.res} ffcv {m.crop}/{m.decode}: {m.measured.median:,.0f} img/s = " + ", ".join(parts))
    several = len({m.res for m in measured}) > 1
    memory = [f"{m.pipeline}{f' {m.crop}/{m.decode}' if m.decode else ''}{f' at {m.res} px' if several else ''} "
              f"{m.memory_mb:,.0f} MiB" for m in measured if m.memory_mb is not None]
    if memory:
        lines.append("anonymous memory each loader added to its process (and its workers'): " + ", ".join(memory))
    return lines


def gpu_path_line(res: int, counts: dict, backend: str | None) -> str:
    """How the GPU path decoded its samples (every epoch it ran, warm-up included) and on which
    nvJPEG backend."""
    from .report import describe_decode_counts

    return (f"GPU path at res {res}, samples of every epoch run: {describe_decode_counts(counts)}; "
            f"nvJPEG backend: {backend or 'none (the path ran on the CPU)'}")


def _loader_rows(measured, command: str, settings: dict, top=None) -> list[dict]:
    """One row per pipeline, crop decoder, decode path and resolution; ffcv rows name their
    decoder in settings["crop"] and decode path in settings["decode"], and carry ratio = their
    median / PyTorch's at the same resolution. Every row says where its batches landed
    (settings["device"]) and the CPU cores it kept busy (settings["cores_used"], median, with
    _min and _max over the measured epochs); GPU-path rows also how their samples were decoded
    (settings["decode_counts"], every epoch run) and nvJPEG's backend; rows on a GPU the most GPU
    memory one epoch added (settings["gpu_memory_added_mb"]); with `top` (ceiling.Ceiling) this
    machine's ceiling on the same JPEGs and the fraction of it reached (settings["ceiling"]),
    and every row its warm-up rounds and epochs per measured round."""
    from .ceiling import ceiling_settings
    from .results import environment
    from .stats import ratio

    env = environment()
    torch_at = {m.res: m for m in measured if m.pipeline == "pytorch"}
    dali_at = {m.res: m for m in measured if m.pipeline == "dali"}
    rows = []
    for m in measured:
        extra = {"crop": m.crop} if m.crop is not None else {}
        if m.decode is not None:
            extra["decode"] = m.decode
        if m.cores is not None:
            extra.update(cores_used=round(m.cores.median, 2), cores_used_min=round(m.cores.min, 2),
                         cores_used_max=round(m.cores.max, 2))
        if m.decode_counts is not None:
            extra.update(decode_counts=m.decode_counts, nvjpeg_backend=m.nvjpeg_backend)
        if m.gpu_memory_mb is not None:  # the budget for the GPU path: <= 2 GiB at batch 256
            extra["gpu_memory_added_mb"] = round(m.gpu_memory_mb, 1)
        if top is not None:
            extra["ceiling"] = ceiling_settings(top, m.res, m.measured.median, m.decode)
        if m.round_epochs is not None:
            extra["epochs_per_round"] = m.round_epochs.median
        if m.memory_mb is not None:
            extra["memory_added_mb"] = round(m.memory_mb, 1)
        if m.pipeline == "ffcv" and m.res in dali_at:
            extra["vs_dali"] = round(ratio(m.measured.median, dali_at[m.res].measured.median), 3)
        r = (ratio(m.measured.median, torch_at[m.res].measured.median)
             if m.pipeline in ("ffcv", "dali") and m.res in torch_at else None)
        rows.append(make_row(
            "loader", m.pipeline, command,
            dict(settings, images_per_epoch=m.images_per_epoch, warmup_rounds=m.warmup, batch_shape=list(m.shape),
                 device=m.device, **extra),
            env=env, res=m.res, batch=m.batch, workers=m.workers,
            images_per_second=m.measured.median, images_per_second_min=m.measured.min,
            images_per_second_max=m.measured.max, runs=m.measured.n, ratio=r))
    return rows


def _crop_comparison(measured) -> str:
    """Both crop decoders' median (min-max) images/s at each resolution (CPU decode, the one
    path both have), and ours / stock."""
    by = {(m.res, m.crop): m.measured for m in measured if m.pipeline == "ffcv" and m.decode == "cpu"}
    lines = ["ffcv crop decoders, median (min-max) images/s"]
    for res in sorted({res for res, _ in by}):
        ours, stock = by[(res, "seeded")], by[(res, "ffcv")]
        lines.append(f"res {res}: seeded {ours.median:,.0f} ({ours.min:,.0f}-{ours.max:,.0f}), "
                     f"ffcv {stock.median:,.0f} ({stock.min:,.0f}-{stock.max:,.0f}); "
                     f"seeded / ffcv = {ours.median / stock.median:.3f}x")
    return "\n".join(lines)


def _check_at_least(*checks) -> None:
    for name, value, least in checks:
        if value < least:
            raise UserError(f"{name} must be at least {least}, got {value}")


@main.command()
@click.option("--res", "res_list", default="224", show_default=True, help="Input resolutions, comma-separated.")
@click.option("--batch", type=int, default=256, show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="Autocast dtype. Default: the trainer's: bf16 on a GPU (fp16 where bf16 is missing), fp32 on CPU.")
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

    from .model_bench import bench_config, prepare_step, resolve_precision, run_model_bench
    from .report import model_table

    resolutions = parse_int_list(res_list, "--res")
    dev = resolve_device(device, "--device")
    precision = resolve_precision(precision, dev)
    _check_at_least(("--batch", batch, 1), ("--steps", steps, 1), ("--warmup", warmup, 0),
                    *(("--res", r, 32) for r in resolutions))
    if compile_ and warmup < 1:
        raise UserError("--compile needs --warmup of at least 1: the first step compiles")
    # One model and step for all resolutions, as progressive resizing gets in the trainer.
    cfgs = [bench_config(res, batch, precision, channels_last, compile_, blurpool) for res in resolutions]
    step = prepare_step(cfgs[0], dev)
    command = command_line(ctx)
    rows = []
    for cfg in cfgs:
        m = run_model_bench(cfg, steps, warmup, dev, step=step, echo=_echo_err)
        rows.append(model_row(m, command, blurpool=blurpool))
        _write_rows(results, rows[-1:])  # each as it comes: a run cut short (timeout) keeps what it measured
    click.echo(model_table(rows))


def model_row(m, command: str, env: dict | None = None, blurpool: bool = False) -> dict:
    settings = {"device": m.device, "warmup_steps": m.warmup, "measured_steps": m.steps}
    if blurpool:
        settings["blurpool"] = True
    return make_row(
        "model", "model", command, settings, env=env,
        res=m.res, batch=m.batch, precision=m.precision, channels_last=m.channels_last, compile=m.compile,
        images_per_second=m.images_per_second, images_per_second_min=m.images_per_second_min,
        images_per_second_max=m.images_per_second_max, runs=m.steps, ms_per_step=m.step_ms.median,
        peak_memory_mb=m.peak_memory_mb, memory_kind=m.memory_kind)


@main.command()
@click.option("--recipe", required=True, help="Bundled recipe name (pretrain_90ep.yaml) or a YAML path.")
@click.option("--train", "train", required=True, type=click.Path(dir_okay=False), help="Train beton (with its manifest).")
@click.option("--max-steps", type=int, default=None,
              help="Steps per epoch; a whole epoch's seconds are then extrapolated from them. Default: whole epochs.")
@click.option("--epochs", type=int, default=1, show_default=True, help="Measured epochs.")
@click.option("--warmup", type=int, default=1, show_default=True,
              help="Epochs before them, not counted (loader compilation, cudnn autotuning, torch.compile).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Passed to ffcv-train, e.g. compile=true.")
@click.option("--out", "run_dir", type=click.Path(file_okay=False), default=None,
              help="Keep the trainer's run dir here. Default: a temporary one, removed afterwards.")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="Also time the loader alone and the model alone, for the bottleneck verdict.")
@decode_option(None, "Decode path(s) to run the trainer with (data.decode), each its own run, row and verdict: "
                     "cpu, gpu (the GPU data path), auto. Default: the recipe's data.decode.")
@results_option
@click.option("--gpu-path-on-cpu", is_flag=True, hidden=True,
              help="Tests: let data.decode gpu run the GPU path's code on the CPU.")
@click.pass_context
@report_user_errors
def epoch(ctx, recipe, train, max_steps, epochs, warmup, sets, run_dir, compare, decode_opts, results,
          gpu_path_on_cpu):
    """The real trainer end to end: seconds per epoch, images/s, and what limits them; with
    several --decode paths, which one to use on this machine."""
    from .epoch_bench import run_epoch_bench
    from .report import decode_conclusion
    from .results import environment

    _check_at_least(("--epochs", epochs, 1), ("--warmup", warmup, 0))
    if max_steps is not None:
        _check_at_least(("--max-steps", max_steps, 1))
    env = environment()  # one timestamp for the run's rows: `ffcv-bench report` groups them by it
    measured, rows = [], []
    for r in run_epoch_bench(recipe, train, list(sets), warmup, epochs, max_steps, run_dir, compare,
                             echo=_echo_err, echo_raw=lambda text: click.echo(text, err=True, nl=False),
                             decodes=parse_decodes(decode_opts) or None, gpu_path_on_cpu=gpu_path_on_cpu):
        measured.append(r)
        rows.append(epoch_row(r, command_line(ctx), train, env))
        _write_rows(results, rows[-1:])  # each as it comes: a later decode path that fails keeps this one
    click.echo("\n\n".join(r.describe() for r in measured))
    for r in measured:
        if r.loader_counts is not None:
            click.echo(gpu_path_line(r.res, r.loader_counts, r.nvjpeg_backend) + " (loader alone)")
    for line in decode_conclusion(rows):
        click.echo(line)


def epoch_row(r, command: str, train: str, env: dict | None = None) -> dict:
    s = r.settings
    settings = {
        "recipe": s.recipe, "train": recorded_path(Path(train).resolve()), "device": s.device, "num_images": s.num_images,
        "steps_per_epoch": s.steps_per_epoch, "steps_measured": r.steps_measured, "max_steps": r.max_steps,
        "warmup_epochs": r.warmup, "measured_epoch_seconds": r.measured_epoch_seconds.median,
        "num_classes": s.num_classes, "blurpool": s.blurpool, "crop": s.train_crop, "decode": s.decode,
        "loader_only_images_per_second": r.loader_only,
        "model_only_images_per_second": r.model_only,
        "limit": r.verdict.limit if r.verdict else None,
        "percent_lost": round(r.verdict.percent, 2) if r.verdict else None,
    }
    if r.loader_counts is not None:
        settings.update(loader_only_decode_counts=r.loader_counts, nvjpeg_backend=r.nvjpeg_backend)
    return make_row(
        "epoch", "trainer", command, settings, env=env, res=r.res, batch=s.batch, workers=s.workers,
        precision=s.precision, channels_last=s.channels_last, compile=s.compile,
        images_per_second=r.images_per_second.median, images_per_second_min=r.images_per_second.min,
        images_per_second_max=r.images_per_second.max, runs=r.images_per_second.n,
        ms_per_step=1000 * s.batch / r.images_per_second.median, epoch_seconds=r.epoch_seconds,
        extrapolated=r.extrapolated, verdict=r.verdict.text if r.verdict else None)


@main.command()
@click.option("--recipe", default=None, help="Bundled recipe name (pretrain_90ep.yaml) or a YAML path.")
@click.option("--plan", "plan_csv", type=click.Path(dir_okay=False), default=None,
              help="Or: a plan of ffcv-sweep plan; every training run priced, the grid's device-hours and wall time.")
@click.option("--images-per-epoch", type=int, default=None, help="Training images per epoch.")
@click.option("--train", "train", type=click.Path(dir_okay=False), default=None,
              help="Or: the train beton, whose manifest gives images per epoch.")
@click.option("--images-per-second", type=float, default=None,
              help="Throughput to assume. Default: the newest `ffcv-bench epoch` row of this recipe.")
@click.option("--machine", default=None,
              help="Use only results whose GPU name or host contains this (e.g. H100). With --images-per-second: "
                   "the device that figure is from (e.g. H100, cpu), which names the hours.")
@click.option("--gpus", type=int, default=None,
              help="GPUs that produced the throughput (for e.g. H100-hours). Default: the row's GPU count, else 1.")
@click.option("--devices", default="1,8,64", show_default=True,
              help="With --plan: wall time on each of these numbers of devices, comma-separated.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Recipe overrides, e.g. schedule.epochs=60.")
@results_option
@report_user_errors
def cost(recipe, plan_csv, images_per_epoch, train, images_per_second, machine, gpus, devices, sets, results):
    """Predicted wall time and device-hours (e.g. H100-hours) of a whole recipe, or of every run
    of a plan, from measured throughput."""
    from .cost import Measured, describe, images_per_epoch as count_images, latest_epoch_throughput, predict, recipe_facts
    from .results import read_results

    if (recipe is None) == (plan_csv is None):
        raise UserError("give exactly one of --recipe R and --plan PLAN.csv")
    if plan_csv is not None:
        return _study_cost(plan_csv, machine, parse_int_list(devices, "--devices"), results)
    facts = recipe_facts(recipe, list(sets))
    n = count_images(images_per_epoch, train)
    if gpus is not None:
        _check_at_least(("--gpus", gpus, 1))
    if images_per_second is not None:
        if images_per_second <= 0:
            raise UserError(f"--images-per-second must be positive, got {images_per_second}")
        measured = Measured(images_per_second, "given by --images-per-second", 1, machine)
    else:
        measured = latest_epoch_throughput(read_results(results), facts, machine)
    click.echo(describe(facts, predict(facts, n, measured, gpus), measured.source, measured.gpu))


def _study_cost(plan_csv: str, machine: str | None, devices: list[int], results: str) -> None:
    from ffcv_inat.sweep.plan import read_plan

    from .results import read_results
    from .study_cost import describe_study, study_costs

    _check_at_least(*(("--devices", n, 1) for n in devices))
    costs, why = study_costs(read_plan(plan_csv), read_results(results), machine)
    click.echo(describe_study(costs, why, devices))


@main.command()
@click.option("--results", "results", type=click.Path(dir_okay=False), default=str(DEFAULT_RESULTS),
              show_default="bench/results/results.csv", help="CSV to read.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the PNG plots. Default: beside the results CSV.")
@click.option("--no-plots", is_flag=True, help="Only print the table.")
@report_user_errors
def report(results, out_dir, no_plots):
    """Print every results row as a table and draw the throughput plots."""
    from .report import draw_plots, results_table
    from .results import read_results

    df = read_results(results)
    click.echo(results_table(df))
    if not no_plots:
        for path in draw_plots(df, out_dir or Path(results).parent):
            _echo_err(f"wrote {path}")


if __name__ == "__main__":
    main()
