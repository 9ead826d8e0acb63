"""`make demo`: the toolkit's main job end to end on built-in synthetic data.

1. Make synthetic ImageNet (all 1,000 wnids) and iNat-2021 trees.
2. Write betons: ImageNet all, A, NA, NA-k, R-k (train) and A (val); iNat-Mini-A
   train/eval/val; print a table of what was written.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import click
import pandas as pd

from .classes import subset_label
from .synthetic import make_imagenet, make_inat


def write_demo_betons(data: Path, betons: Path, workers: int) -> pd.DataFrame:
    from .writers.beton import WriteOptions
    from .writers.imagenet import write_imagenet
    from .writers.inat import write_inat_mini_a

    opts = WriteOptions(max_res=64, workers=workers)
    jobs = [("imagenet", s, k, split) for s, k, split in
            [("all", None, "train"), ("A", None, "train"), ("A", None, "val"), ("NA", None, "train"),
             ("NA", 100, "train"), ("R", 50, "train")]]
    jobs += [("inat-mini-a", None, None, split) for split in ("train", "eval", "val")]
    rows = []
    for dataset, subset, k, split in jobs:
        if dataset == "imagenet":
            name = f"imagenet_{subset_label(subset, k)}_{split}"
            out = betons / f"{name}.beton"
            start = time.perf_counter()
            m = write_imagenet(data / "imagenet", split, subset, k, 0, out, opts, overwrite=True)
        else:
            name = f"inat_mini_a_{split}"
            out = betons / f"{name}.beton"
            start = time.perf_counter()
            m = write_inat_mini_a(data / "inat2021", split, out, opts, per_class=6, overwrite=True)
        seconds = time.perf_counter() - start
        rows.append({"beton": out.name, "classes": m.num_classes, "images": m.num_images,
                     "skipped": len(m.skipped), "MB": round(out.stat().st_size / 1e6, 1),
                     "images/s written": round(m.num_images / seconds)})
    return pd.DataFrame(rows)


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="demo_out", show_default=True)
@click.option("--workers", type=int, default=0, help="Default: all cores.")
def main(out, workers):
    """Run the demo into OUT (replaced if it exists)."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    workers = workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    click.secho("== 1. synthetic data", bold=True)
    make_imagenet(out / "data" / "imagenet", train_per_class=4, val_per_class=2, size=64, odd_files=True)
    make_inat(out / "data" / "inat2021", num_species=120, train_mini_per_class=10, train_extra_per_class=8,
              val_per_class=4, size=64, odd_files=True)
    click.secho("== 2. write-beton", bold=True)
    (out / "betons").mkdir()
    table = write_demo_betons(out / "data", out / "betons", workers)
    click.echo(table.to_string(index=False))
    click.secho(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; outputs in {out}/", bold=True)


if __name__ == "__main__":
    main()
