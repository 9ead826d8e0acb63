"""The paper's Figure 2 in miniature, on synthetic data in seconds per epoch on a CPU.

Pretrain on synthetic ImageNet-A -> finetune on synthetic iNat-Mini-A, and the scratch
baseline on iNat-Mini-A -> evaluate both checkpoints -> per-supercategory top-1 side by side.

    python -m ffcv_inat.training.demo OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..command_line import CONTEXT_SETTINGS, report_user_errors, run_step
from ..rundir import checkpoint_of, read_summary
from ..synthetic import make_study_data, study_preset

DATA = study_preset("train-demo")  # stored at 40 px; the smoke recipe trains at 32 px


def _betons(root: Path, workers: int) -> dict[str, Path]:
    from ..writers.beton import WriteOptions
    from ..writers.imagenet import write_imagenet
    from ..writers.inat import write_inat_mini_a

    opts = WriteOptions(max_res=DATA.size, workers=workers)
    out = {name: root / f"{name}.beton" for name in ("A_train", "A_val", "inat_train", "inat_val")}
    imagenet, inat = make_study_data(root, DATA)
    subset, k, seed = DATA.imagenet_classes  # the only ImageNet classes the preset writes
    write_imagenet(imagenet, "train", subset, k, seed, out["A_train"], opts)
    write_imagenet(imagenet, "val", subset, k, seed, out["A_val"], opts)
    write_inat_mini_a(inat, "train", out["inat_train"], opts)
    write_inat_mini_a(inat, "val", out["inat_val"], opts)
    return out


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--workers", default=2, show_default=True)
@report_user_errors
def main(out_dir, workers):
    """Write synthetic betons, three smoke runs and two evaluations under OUT_DIR (must not exist)."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=False)
    b = _betons(root / "data", workers)
    # Each step runs as its own `ffcv-train` process, exactly as a user would run it.
    ffcv_train = [sys.executable, "-m", "ffcv_inat.training.cli"]

    def run(name: str, train_beton: Path, val_beton: Path, init: Path | None = None) -> Path:
        click.echo(f"== {name}", err=True)
        out = root / "runs" / name
        args = [
            "--recipe",
            "smoke_cpu.yaml",
            "--train",
            str(train_beton),
            "--val",
            str(val_beton),
            "--out",
            str(out),
            "--set",
            f"data.workers={workers}",
        ]
        run_step([*ffcv_train, *args, *(["--init", str(init)] if init else [])])
        return checkpoint_of(out)

    pre = run("pretrain_A", b["A_train"], b["A_val"])
    finetuned = run("finetune_inat", b["inat_train"], b["inat_val"], init=pre)
    scratch = run("scratch_inat", b["inat_train"], b["inat_val"])
    results = {}
    for name, ckpt in (("finetuned from A", finetuned), ("from scratch", scratch)):
        out = root / "eval" / ckpt.parent.parent.name
        run_step(
            [
                *ffcv_train,
                "eval",
                "--checkpoint",
                str(ckpt),
                "--val",
                str(b["inat_val"]),
                "--out",
                str(out),
                "--batch-size",
                "16",
                "--workers",
                str(workers),
            ],
            quiet=True,
        )
        results[name] = read_summary(out)
    names = list(results)
    click.echo(f"\niNat-Mini-A top-1 per supercategory (synthetic data, {DATA.size}-px images)")
    click.echo(f"{'supercategory':<20}" + "".join(f"{n:>18}" for n in names))
    for sc in results[names[0]]["per_supercategory"]:
        cells = [results[n]["per_supercategory"][sc] for n in names]
        click.echo(f"{sc:<20}" + "".join(f"{'-' if c is None else f'{c:.3f}':>18}" for c in cells))
    click.echo(f"{'all':<20}" + "".join(f"{results[n]['top1']:>18.3f}" for n in names))


if __name__ == "__main__":
    main()
