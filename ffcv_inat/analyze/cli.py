"""`ffcv-analyze RUNS_DIR [--out FIGDIR] [--species-csv CSV]`: results.csv, the paper's findings
tested on it (findings.csv, findings.md), the table, the figures."""

from __future__ import annotations

from pathlib import Path

import click

from .. import UserError
from .findings import findings_markdown, findings_table, format_findings, given_weights
from .table import (
    SPECIES_CSV_HELP,
    format_table,
    gather,
    join_species,
    per_class_table,
    read_species_csv,
    species_gain,
    supercategory_table,
)
from ..atomic import atomic_outputs, write_text_atomic
from ..command_line import CONTEXT_SETTINGS, report_user_errors


def _write_csv(df, path: Path) -> Path:
    with atomic_outputs(path) as (tmp,):
        df.to_csv(tmp, index=False)
    return path


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("runs_dir", type=click.Path(file_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where results.csv and the figures go. Default: RUNS_DIR/../analysis.",
)
@click.option(
    "--species-csv",
    type=click.Path(dir_okay=False),
    default=None,
    help="species,imagenet_images,family: how well ImageNet represents each species (Figure 1).",
)
@click.option(
    "--pretrained",
    default="all",
    show_default=True,
    help="Pretraining subset whose finetune is compared with scratch per species (Figure 1).",
)
@click.option(
    "--caption",
    default="",
    metavar="TEXT",
    help="A second title line on every figure and on the findings, e.g. 'synthetic data, smoke grid' "
    "(make demo sets it).",
)
@report_user_errors
def main(runs_dir, out_dir, species_csv, pretrained, caption):
    """Gather every completed run under RUNS_DIR into results.csv, test the paper's findings on it
    (findings.csv, findings.md) and draw the paper's figures."""
    from . import figures  # matplotlib only when drawing

    runs = Path(runs_dir)
    out = Path(out_dir) if out_dir else runs.resolve().parent / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    df = gather(runs)
    if df.empty:
        raise UserError(f"no completed runs (summary.json) under {runs}")
    click.echo(f"{len(df)} completed runs under {runs}")
    click.echo(format_table(df))
    written = [_write_csv(df, out / "results.csv")]
    findings = findings_table(df)
    given = given_weights(df)
    click.echo("\n" + format_findings(findings, caption, given) + "\n")
    write_text_atomic(out / "findings.md", findings_markdown(findings, caption, given))
    written += [_write_csv(findings, out / "findings.csv"), out / "findings.md"]
    super_table = supercategory_table(df)
    if not super_table.empty:
        written.append(_write_csv(super_table.rename_axis("supercategory").reset_index(), out / "supercategory.csv"))
    gain = species_gain(per_class_table(df), pretrained)
    written.append(_write_csv(gain, out / "species_gain.csv"))

    figs = [
        figures.figure3(df, out / "fig3_finetune_vs_classes.png", caption),
        figures.figure4(df, out / "fig4_linear_probe_vs_classes.png", caption),
        figures.figure6(df, out / "fig6_R_animal_scaled.png", caption),
        figures.figure2(super_table, out / "fig2_supercategories.png", caption),
    ]
    label = "ImageNet" if pretrained == "all" else f"ImageNet {pretrained}"
    if species_csv:
        joined = join_species(gain, read_species_csv(species_csv))
        if joined.empty:
            raise UserError(f"{species_csv}: no species matches an id or name in the runs' per_class.csv")
        written.append(_write_csv(joined, out / "species_gain_joined.csv"))
        figs.append(figures.figure1(joined, out / "fig1_species_gain.png", label, caption))
    for p in written:
        click.echo(f"table:  {p}")
    for p in figs:
        click.echo(f"figure: {p}")
    if not species_csv:
        click.echo(f"figure 1 skipped. {SPECIES_CSV_HELP} Per-species gains are in {out / 'species_gain.csv'}.")


if __name__ == "__main__":
    main()
