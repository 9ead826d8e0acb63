"""The smoke grid's first step: synthetic ImageNet + iNat-2021 trees, made atomically.

    python -m ffcv_inat.sweep.synthetic_data OUT_DIR [--imagenet-train N ...]

The trees are built in a hidden sibling folder and renamed to OUT_DIR only when complete, so
"OUT_DIR exists" means "done" and an interrupted step leaves nothing the sweep would trust.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from ..atomic import temp_path_for
from ..synthetic import make_imagenet, make_inat


def make_synthetic_data(out: str | Path, imagenet_train: int, imagenet_val: int, inat_species: int, size: int) -> Path:
    out = Path(out)
    tmp = temp_path_for(out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        make_imagenet(tmp / "imagenet", imagenet_train, imagenet_val, size=size)
        make_inat(tmp / "inat2021", num_species=inat_species, size=size)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--imagenet-train", type=int, default=2, show_default=True)
@click.option("--imagenet-val", type=int, default=1, show_default=True)
@click.option("--inat-species", type=int, default=24, show_default=True)
@click.option("--size", type=int, default=32, show_default=True)
def main(out_dir, imagenet_train, imagenet_val, inat_species, size):
    """Write OUT_DIR/imagenet (all 1,000 wnids) and OUT_DIR/inat2021, all or nothing."""
    if Path(out_dir).exists():
        raise click.ClickException(f"{out_dir} exists; remove it to make the data again")
    out = make_synthetic_data(out_dir, imagenet_train, imagenet_val, inat_species, size)
    click.echo(f"synthetic data in {out}")


if __name__ == "__main__":
    main()
