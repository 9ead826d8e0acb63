"""The data-preparing subcommands: `ffcv-bench prepare real-photos`, `prepare synthetic` and
`prepare imagenet-sized`."""

from __future__ import annotations

from pathlib import Path

import click

from ffcv_inat.command_line import CONTEXT_SETTINGS, report_user_errors
from ffcv_inat.classes import SUBSETS
from ffcv_inat.study import IMAGENET_TRAIN_IMAGES


@click.group(context_settings=CONTEXT_SETTINGS)
def prepare():
    """Write the images and betons the benchmarks read."""


@prepare.command("real-photos", short_help="Real ImageNet photos (ajschumacher/imagen) as a folder and beton.")
@click.argument("source", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--max-images", type=int, default=1000, show_default=True, help="The first N photos, by file name.")
@click.option("--workers", type=int, default=1, show_default=True, help="Writer workers.")
@report_user_errors
def real_photos(source, out_dir, max_images, workers):
    """OUT_DIR/photos (links to SOURCE's photos, a clone of ajschumacher/imagen, as class folders
    by wnid) and OUT_DIR/real.beton of them, as a beton stores them (<= 512 px, q90)."""
    from ffcv_inat.bench.data.real_photos import write_real_photos

    write_real_photos(source, out_dir, max_images, workers, echo=click.echo)


@prepare.command("synthetic", short_help="Synthetic ImageNet-like JPEGs and their beton.")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--classes", type=int, default=100, show_default=True, help="ImageNet classes, drawn at random.")
@click.option("--per-class", type=int, default=40, show_default=True, help="Images per class.")
@click.option("--size", type=int, default=448, show_default=True, help="Side of each square JPEG, px.")
@click.option("--workers", type=int, default=1, show_default=True, help="Processes making images, writer workers.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the class draw.")
@report_user_errors
def synthetic(out_dir, classes, per_class, size, workers, seed):
    """OUT_DIR/imagenet/train (synthetic ImageNet-like JPEGs of real wnids) and OUT_DIR/train.beton of them."""
    from ffcv_inat.bench.data.synthetic_beton import make_synthetic_beton

    make_synthetic_beton(out_dir, classes, per_class, size, workers, seed, echo=click.echo)


@prepare.command("imagenet-sized", short_help="A beton of ImageNet's 1.28 M samples (tiny images), views and copies.")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--samples", type=int, default=IMAGENET_TRAIN_IMAGES, show_default=True, help="Samples, in 1,000 classes."
)
@click.option("--side", type=int, default=8, show_default=True, help="Side of each raw noise image, px.")
@click.option("--workers", type=int, default=1, show_default=True, help="Writer workers.")
@click.option(
    "--subset",
    type=click.Choice(SUBSETS),
    default=None,
    help="Also write this subset (with --k, k of its classes drawn with seed 0) as a view of the parent and "
    "as a standalone copy of its samples, named as write-beton names them.",
)
@click.option("--k", type=int, default=None, help="Classes of --subset to draw.")
@report_user_errors
def imagenet_sized(out_dir, samples, side, workers, subset, k):
    """OUT_DIR/imagenet_all_train.beton: ImageNet's classes and sample count in tiny raw images
    (what `ffcv-bench view-cost` needs to see ffcv's tables over 1.28 M samples), and the views
    asked for with its copy. The parent is kept when it exists."""
    from ffcv_inat.bench.data.imagenet_sized import PARENT_NAME, write_imagenet_sized, write_view_and_copy

    parent = Path(out_dir) / PARENT_NAME
    if not parent.exists():
        write_imagenet_sized(out_dir, samples, side, workers, echo=click.echo)
    if subset is not None:
        write_view_and_copy(parent, subset, k, workers, echo=click.echo)


COMMANDS = [prepare]
