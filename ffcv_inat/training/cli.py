"""`ffcv-train`: train from a recipe, or `ffcv-train eval` a checkpoint. A thin layer over trainer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .. import UserError
from ..command_line import CONTEXT_SETTINGS, report_user_errors
from ..config import DECODES, DEVICES
from ..environment import PRECISIONS
from ..rundir import CONFIG


class _TrainByDefault(click.Group):
    """`ffcv-train --recipe ...` runs the `train` command; `ffcv-train eval ...` evaluates,
    `ffcv-train export ...` writes the weights for use elsewhere."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in CONTEXT_SETTINGS["help_option_names"]:
            args = ["train", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_TrainByDefault, context_settings=CONTEXT_SETTINGS)
def main():
    """Train ResNet-50 from FFCV betons (`ffcv-train --recipe R ...`, the default command),
    evaluate a checkpoint (`ffcv-train eval ...`) or export its weights (`ffcv-train export ...`)."""


def _print_metrics(summary: dict) -> None:
    if summary.get("top1") is not None:
        click.echo(f"top1 {summary['top1']:.4f}  top5 {summary['top5']:.4f}  loss {summary['loss']:.4f}")
        for name, acc in summary.get("per_supercategory", {}).items():
            click.echo(f"  {name:<20} {'-' if acc is None else f'{acc:.4f}'}")


@main.command("train")
@click.option(
    "--recipe",
    help="Bundled recipe file name (e.g. pretrain_90ep.yaml) or a YAML path. "
    "With --resume it defaults to RUN_DIR/config.yaml.",
)
@click.option("--train", "train_beton", type=click.Path(dir_okay=False), help="Shorthand for --set data.train=B.")
@click.option("--val", "val_beton", type=click.Path(dir_okay=False), help="Shorthand for --set data.val=B.")
@click.option("--init", "init", type=click.Path(dir_okay=False), help="Shorthand for --set model.init=CKPT.")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (shorthand for --set out=DIR).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. optim.lr=0.05.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from checkpoints/last.pt.")
@click.option(
    "--no-space-check",
    is_flag=True,
    help="Start even where the run dir's filesystem seems to lack room for the checkpoints the run will hold.",
)
@report_user_errors
def train_cmd(recipe, train_beton, val_beton, init, out, sets, resume, no_space_check):
    """Train (pretrain, finetune, linear probe) as a recipe says; writes a run directory."""
    from ..config import load_config

    if recipe is None:
        if not (resume and out):
            raise UserError("--recipe is required (or --resume --out RUN_DIR to continue a run)")
        recipe = str(Path(out) / CONFIG)
    cfg = load_config(
        recipe, list(sets), {"data.train": train_beton, "data.val": val_beton, "model.init": init, "out": out}
    )
    from .trainer import train  # torch and ffcv: after the config is known to be good

    summary = train(cfg, resume=resume, space_check=not no_space_check)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 reports
    click.echo(f"run dir: {summary['run_dir']}")
    _print_metrics(summary)


@main.command("eval")
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(dir_okay=False),
    help="ffcv-train checkpoint or torchvision ResNet-50 state_dict.",
)
@click.option(
    "--val", "val_beton", required=True, type=click.Path(dir_okay=False), help="Val beton (with its manifest)."
)
@click.option("--out", type=click.Path(file_okay=False), help="Write per_class.csv and summary.json here.")
@click.option("--batch-size", default=256, show_default=True)
@click.option(
    "--res", type=int, default=None, help="Eval resolution. Default: the checkpoint's data.val_res, else 224."
)
@click.option(
    "--workers", default=0, show_default=True, help="Loader threads; 0 = this process's share of the usable cores."
)
@click.option("--tta-flip", is_flag=True, help="Average the logits of each image and its mirror image.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="bf16",
    show_default=True,
    help="Autocast on GPU (bf16 runs as fp16 on GPUs without bf16); CPU always runs fp32.",
)
@click.option(
    "--decode",
    type=click.Choice(DECODES),
    default="cpu",
    show_default=True,
    help="Where JPEGs are decoded, as data.decode: cpu (loader workers), gpu (nvJPEG; workers copy "
    "bytes), auto (gpu on CUDA).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@report_user_errors
def eval_cmd(checkpoint, val_beton, out, batch_size, res, workers, tta_flip, device, precision, decode, as_json):
    """Top-1/top-5, per-class and per-supercategory accuracy of a checkpoint on a val beton."""
    from ..evaluation import evaluate_checkpoint

    summary = evaluate_checkpoint(
        checkpoint,
        val_beton,
        out,
        batch_size=batch_size,
        res=res,
        workers=workers,
        tta_flip=tta_flip,
        device=device,
        precision=precision,
        decode=decode,
    )
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    else:
        _print_metrics(summary)


@main.command("export")
@click.argument("source", type=click.Path())
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="The state_dict file to write (e.g. model.pt)."
)
@click.option("--best", is_flag=True, help="From a run dir: its best.pt (best top-1) instead of last.pt.")
@click.option(
    "--beton",
    type=click.Path(dir_okay=False),
    help="Take the class list from this beton's manifest (for a checkpoint without one).",
)
@report_user_errors
def export_cmd(source, out, best, beton):
    """Write SOURCE's weights (a run dir or a checkpoint) as a plain torchvision ResNet-50
    state_dict, and the classes in label order beside it (OUT's stem + .classes.csv)."""
    from ..export import export_weights

    click.echo(export_weights(source, out, best=best, beton=beton).note())


if __name__ == "__main__":
    main()
