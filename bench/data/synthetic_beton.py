"""Synthetic ImageNet-like images and their beton, for benchmarks on a machine without ImageNet.

    ffcv-bench prepare synthetic OUT_DIR [--classes 100] [--per-class 40] [--size 448]

Writes OUT_DIR/imagenet/train/<wnid>/*.JPEG (the real wnids of a seeded random draw of
`--classes` ImageNet classes, `ffcv_inat.synthetic`) and OUT_DIR/train.beton with its
manifest, written from that folder with the writer's default options. `ffcv-bench loader`
reads both; `ffcv-bench epoch` and `ffcv-train` train on the beton.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


from ffcv_inat import UserError
from ffcv_inat.command_line import check_at_least


@dataclass(frozen=True)
class SyntheticBeton:
    images: Path  # the ImageFolder tree, OUT_DIR/imagenet/train
    beton: Path  # OUT_DIR/train.beton (+ its manifest beside it)
    num_images: int
    num_classes: int


def synthetic_paths(out_dir: str | Path) -> tuple[Path, Path]:
    """(image folder, beton) inside OUT_DIR."""
    out = Path(out_dir)
    return out / "imagenet" / "train", out / "train.beton"


def make_synthetic_beton(
    out_dir: str | Path,
    classes: int,
    per_class: int,
    size: int,
    workers: int = 1,
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> SyntheticBeton:
    """Make the images, then their beton; refuses an OUT_DIR that already holds either."""
    from ffcv_inat.classes import select_classes
    from ffcv_inat.synthetic import make_imagenet

    from ffcv_inat.bench.data.image_folder import list_image_folder, write_source_beton

    check_at_least(
        ("--classes", classes, 1), ("--per-class", per_class, 1), ("--size", size, 16), ("--workers", workers, 1)
    )
    images, beton = synthetic_paths(out_dir)
    for p in (images.parent, beton):
        if p.exists():
            raise UserError(f"{p} exists: remove it to make the data again")
    beton.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    make_imagenet(
        images.parent,
        train_per_class=per_class,
        val_per_class=0,
        size=size,
        wnids=select_classes("R", classes, seed),
        workers=workers,
    )
    echo(f"made {classes * per_class} images of {size}x{size} px in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    m = write_source_beton(list_image_folder(images), beton, workers=workers)
    echo(f"wrote {beton}: {m.num_images} images, {m.num_classes} classes in {time.perf_counter() - t:.1f} s")
    return SyntheticBeton(images, beton, m.num_images, m.num_classes)
