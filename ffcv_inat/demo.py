"""`make demo`: the toolkit's main job end to end on built-in synthetic data.

1. Make synthetic ImageNet (all 1,000 wnids) and iNat-2021 trees.
2. Write betons: ImageNet all, A, NA, NA-k, R-k (train) and A (val); iNat-Mini-A
   train/eval/val; print a table of what was written.
3. Train: pretrain on ImageNet-A -> finetune on iNat-Mini-A, and the scratch baseline;
   evaluate both; per-supercategory accuracy side by side (Figure 2 in miniature).
4. Benchmark the loader: ffcv vs torchvision's ImageFolder pipeline on the synthetic images.
5. Plan and run the smoke grid of the study, analyse it: the paper's findings tested on it
   (docs/analysis.md) and its figures, both labelled as synthetic data.

Steps 3-5 run the commands (`ffcv-train`, `ffcv-bench`, `ffcv-sweep`, `ffcv-analyze`) as
separate processes, exactly as a user would.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import click
import pandas as pd

from .classes import subset_label
from .command_line import CONTEXT_SETTINGS, report_user_errors, run_step
from .environment import usable_cores
from .synthetic import make_study_data


# Every figure and the findings table of step 5 say what they were made from.
SMOKE_CAPTION = "synthetic data (ffcv-sweep smoke grid, docs/sweep.md)"


def write_demo_betons(data: Path, betons: Path, workers: int) -> pd.DataFrame:
    from .writers.beton import WriteOptions
    from .writers.imagenet import write_imagenet
    from .writers.inat import write_inat_mini_a

    opts = WriteOptions(max_res=64, workers=workers)
    jobs = [
        ("imagenet", s, k, split)
        for s, k, split in [
            ("all", None, "train"),
            ("A", None, "train"),
            ("A", None, "val"),
            ("NA", None, "train"),
            ("NA", 100, "train"),
            ("R", 50, "train"),
        ]
    ]
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
        rows.append(
            {
                "beton": out.name,
                "classes": m.num_classes,
                "images": m.num_images,
                "skipped": len(m.skipped),
                "MB": round(out.stat().st_size / 1e6, 1),
                "images/s written": round(m.num_images / seconds),
            }
        )
    return pd.DataFrame(rows)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--out", type=click.Path(file_okay=False), default="demo_out", show_default=True)
@click.option("--workers", type=int, default=0, help="Default: all cores.")
@report_user_errors
def main(out, workers):
    """Run the demo into OUT (replaced if it exists)."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    workers = workers or usable_cores()
    t0 = time.perf_counter()
    click.secho("== 1. synthetic data", bold=True)
    make_study_data(out / "data", "demo", workers=workers)
    click.secho("== 2. write-beton", bold=True)
    (out / "betons").mkdir()
    table = write_demo_betons(out / "data", out / "betons", workers)
    click.echo(table.to_string(index=False))

    py = sys.executable
    click.secho("\n== 3. ffcv-train: pretrain on A -> finetune on iNat-Mini-A vs from scratch", bold=True)
    run_step([py, "-m", "ffcv_inat.training.demo", str(out / "train"), "--workers", str(workers)])
    click.secho(
        "\n== 4. ffcv-bench loader: ffcv vs DALI (when installed) and torchvision ImageFolder + DataLoader", bold=True
    )
    run_step(
        [
            py,
            "-m",
            "ffcv_inat.bench.cli",
            "loader",
            "--images",
            str(out / "data" / "imagenet" / "train"),
            "--beton",
            str(out / "betons" / "imagenet_all_train.beton"),
            "--res",
            "32,64",
            "--workers",
            str(workers),
            "--batch",
            "64",
            "--epochs",
            "2",
            "--warmup",
            "1",
            "--min-seconds",
            "1",  # short rounds: a demo
            "--results",
            str(out / "bench.csv"),
        ]
    )
    click.secho("\n== 5. ffcv-sweep smoke grid -> ffcv-analyze: the paper's findings and figures", bold=True)
    sweep = out / "sweep"
    run_step([py, "-m", "ffcv_inat.sweep.cli", "plan", "--grid", "smoke", "--out", str(sweep / "plan.csv")])
    run_step([py, "-m", "ffcv_inat.sweep.cli", "run", str(sweep / "plan.csv")])
    run_step(
        [
            py,
            "-m",
            "ffcv_inat.analyze.cli",
            str(sweep / "runs"),
            "--out",
            str(sweep / "figures"),
            "--caption",
            SMOKE_CAPTION,
        ]
    )
    click.secho(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; outputs in {out}/", bold=True)


if __name__ == "__main__":
    main()
