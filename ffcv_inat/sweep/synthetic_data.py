"""The smoke grid's first step: synthetic ImageNet + iNat-2021 trees, made atomically.

    python -m ffcv_inat.sweep.synthetic_data OUT_DIR [--preset smoke]

What the data is (sizes, classes) is a preset of ffcv_inat.synthetic.STUDY_PRESETS, the one
place that says it for the demo, the trainer demo and this grid. The trees are built in a
hidden sibling folder and renamed to OUT_DIR only when complete, so "OUT_DIR exists" means
"done" and an interrupted step leaves nothing the sweep would trust.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from ..atomic import temp_path_for
from ..command_line import CONTEXT_SETTINGS
from ..synthetic import STUDY_PRESETS, StudyData, make_study_data


def make_synthetic_data(out: str | Path, data: StudyData | str = "smoke") -> Path:
    out = Path(out)
    tmp = temp_path_for(out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        make_study_data(tmp, data)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--preset",
    type=click.Choice(sorted(STUDY_PRESETS)),
    default="smoke",
    show_default=True,
    help="Which synthetic study data (ffcv_inat.synthetic.STUDY_PRESETS).",
)
def main(out_dir, preset):
    """Write OUT_DIR/imagenet and OUT_DIR/inat2021, all or nothing."""
    if Path(out_dir).exists():
        raise click.ClickException(f"{out_dir} exists; remove it to make the data again")
    out = make_synthetic_data(out_dir, preset)
    click.echo(f"synthetic data ({preset}) in {out}")


if __name__ == "__main__":
    main()
