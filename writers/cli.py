"""`write-beton`: ImageNet subsets and iNat-Mini-A to .beton + manifest."""

from __future__ import annotations

import os
import time

import click

from ffcv_inat import UserError
from ffcv_inat.classes import SUBSETS, subset_label
from ffcv_inat.command_line import CONTEXT_SETTINGS, report_user_errors

from .beton import ON_ERROR, WRITE_MODES, WriteOptions, check_out_path

DATASETS = ("imagenet", "inat-mini-a")
ALL_SPLITS = ("train", "val", "eval")


def default_out_name(dataset: str, split: str, subset: str, k: int | None, seed: int, view: bool = False) -> str:
    """A file name that says what the beton (or view) holds, so that `write-beton --subset NA --k 300` just works."""
    if dataset == "imagenet":
        name = f"imagenet_{subset_label(subset, k)}{'' if k is None else f'_s{seed}'}_{split}"
        return name + (".view.json" if view else ".beton")
    return f"inat_mini_a_{split}{f'_s{seed}' if split == 'eval' else ''}.beton"


def default_on_error(dataset: str, split: str) -> str:
    """What a missing or undecodable image does unless --on-error says: iNat's evaluation set
    stops, so that a half-extracted train/ never gives a smaller evaluation set quietly."""
    return "fail" if (dataset, split) == ("inat-mini-a", "eval") else "skip"


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--dataset", type=click.Choice(DATASETS), default="imagenet", show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Dataset root. Default: $IMAGENET_DIR or $INAT_DIR.",
)
@click.option(
    "--split",
    type=click.Choice(ALL_SPLITS),
    default="train",
    show_default=True,
    help="imagenet: train|val. inat-mini-a: train (train_mini) | eval (from train, never train_mini) | val.",
)
@click.option(
    "--subset",
    default="all",
    show_default=True,
    help=f"ImageNet classes: {', '.join(SUBSETS)} (A = 398 animals, NA = 602 others, R = random).",
)
@click.option("--k", type=int, default=None, help="Draw k classes at random (seeded) from the subset; R needs it.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the class draw / eval sampling.")
@click.option(
    "--from",
    "parent",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="PARENT.beton",
    help="Write a view instead of a beton: the subset's classes of PARENT (an ImageNet beton holding them all) "
    "as one small NAME.view.json, in about a second, no image read. Readers take it wherever a beton goes.",
)
@click.option(
    "--devkit",
    type=click.Path(),
    default=None,
    help="ImageNet's official flat val/: the ILSVRC2012_devkit_t12 folder or .tar.gz with its labels. "
    "Default: found beside the data dir.",
)
@click.option("--per-class", type=int, default=50, show_default=True, help="inat-mini-a eval: images per species.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="PATH/NAME.beton (NAME.json is written beside it), or with --from PATH/NAME.view.json. "
    "Default: ./<dataset>_<subset>_<split>.beton (.view.json), e.g. imagenet_NA-300_s0_train.beton.",
)
@click.option("--max-res", type=int, default=512, show_default=True, help="Longest side of stored images.")
@click.option("--write-mode", type=click.Choice(WRITE_MODES), default="jpg", show_default=True)
@click.option("--jpeg-quality", type=int, default=90, show_default=True)
@click.option(
    "--compress-prob", type=float, default=0.5, show_default=True, help="write-mode proportion: share stored as JPEG."
)
@click.option("--workers", type=int, default=0, help="Worker processes. Default: all cores.")
@click.option(
    "--on-error",
    type=click.Choice(ON_ERROR),
    default=None,
    help="Missing or undecodable files: skip (listed in the manifest) or fail naming the file. Default: skip, "
    "but fail for inat-mini-a eval (a smaller evaluation set should be asked for).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@click.option(
    "--no-space-check",
    is_flag=True,
    help="Write even where --out's filesystem seems to lack room for the estimated size.",
)
@click.option(
    "--verify",
    "verify",
    multiple=True,
    type=click.Path(dir_okay=False),
    metavar="PATH.beton",
    help="Write nothing: check PATH.beton against its manifest and recompute its sha256 (repeatable).",
)
@click.option(
    "--record",
    is_flag=True,
    help="With --verify: record size, sample count and sha256 into a manifest written before they were.",
)
@report_user_errors
def main(
    dataset,
    data_dir,
    split,
    subset,
    k,
    seed,
    parent,
    devkit,
    per_class,
    out,
    max_res,
    write_mode,
    jpeg_quality,
    compress_prob,
    workers,
    on_error,
    overwrite,
    no_space_check,
    verify,
    record,
):
    """Write an FFCV .beton and its manifest, or --verify one.

    \b
    write-beton --subset NA --k 300 --split train --out betons/NA-300_train.beton
    write-beton --dataset inat-mini-a --split eval --out betons/inat_eval.beton
    write-beton --subset NA --k 300 --from betons/imagenet_all_train.beton --out betons/NA-300_train.view.json
    write-beton --verify betons/NA-300_train.beton
    """
    if verify:
        return verify_main(verify, record)
    if record:
        raise UserError("--record goes with --verify PATH.beton")
    if parent is not None:
        return view_main(parent, dataset, subset, k, seed, out, overwrite)
    opts = WriteOptions(
        max_res=max_res,
        write_mode=write_mode,
        jpeg_quality=jpeg_quality,
        compress_prob=compress_prob,
        workers=workers,
        on_error=on_error or default_on_error(dataset, split),
        space_check=not no_space_check,
    )
    out = out or default_out_name(dataset, split, subset, k, seed)
    check_out_path(out, overwrite)  # before any slow work
    opts.validate()
    env = "IMAGENET_DIR" if dataset == "imagenet" else "INAT_DIR"
    data_dir = data_dir or os.environ.get(env)
    if not data_dir:
        raise UserError(f"no data dir: pass --data-dir or set ${env}")
    start = time.perf_counter()
    m, what = write_dataset(dataset, data_dir, split, subset, k, seed, per_class, out, opts, overwrite, devkit)
    seconds = time.perf_counter() - start
    size_mb = os.path.getsize(out) / 1e6
    click.echo(
        f"wrote {out}: {what}, {m.num_classes} classes, {m.num_images} images, "
        f"{size_mb:.1f} MB, {m.num_images / seconds:.0f} images/s; skipped {len(m.skipped)}"
    )


def write_dataset(dataset, data_dir, split, subset, k, seed, per_class, out, opts, overwrite, devkit=None):
    """The beton of `dataset` (its writer's checks first); (its manifest, what it holds in words)."""
    if dataset == "imagenet":
        from .imagenet import write_imagenet

        if split == "eval":
            raise UserError("split eval exists only for --dataset inat-mini-a; ImageNet has train and val")
        m = write_imagenet(data_dir, split, subset, k, seed, out, opts, overwrite=overwrite, devkit=devkit)
        return m, f"ImageNet {subset_label(subset, k)} {split}"
    else:
        from .inat import write_inat_mini_a

        if subset != "all" or k is not None:
            raise UserError("--subset/--k apply to ImageNet only; iNat-Mini-A is all animal species")
        if devkit is not None:
            raise UserError("--devkit is ImageNet's (its official val labels); iNat-Mini-A has none")
        if per_class < 1:
            raise UserError(f"--per-class must be at least 1, got {per_class}")
        m = write_inat_mini_a(data_dir, split, out, opts, per_class=per_class, seed=seed, overwrite=overwrite)
        return m, f"iNat-Mini-A {split}"


def view_main(parent, dataset, subset, k, seed, out, overwrite) -> None:
    """`--from`: a view of PARENT, one line said."""
    from .view import write_view

    if dataset != "imagenet":
        raise UserError("--from writes ImageNet views; iNat betons are written whole")
    if out is None:  # named for the parent's split
        from ffcv_inat.beton import check_beton

        out = default_out_name(dataset, check_beton(parent).split, subset, k, seed, view=True)
    start = time.perf_counter()
    m = write_view(parent, subset, k, seed, out, overwrite)
    click.echo(
        f"wrote {out}: view of {parent}, ImageNet {subset_label(subset, k)} {m.split}, {m.num_classes} classes, "
        f"{m.num_images} images, in {time.perf_counter() - start:.2f} s"
    )


def verify_main(betons, record: bool) -> None:
    """`--verify`: one line per beton, OK or what differs; nonzero exit if any differs."""
    from ffcv_inat.beton import record_integrity, verify_beton

    failed = 0
    for beton in betons:
        try:
            if record:
                m, changed = record_integrity(beton)
            else:
                m, changed = verify_beton(beton), False
        except UserError as e:
            if len(betons) == 1:
                raise
            click.echo(f"FAILED {e}", err=True)
            failed += 1
            continue
        i = m.integrity or m.view.integrity  # a view: its parent's
        what = "recorded" if changed else "OK"
        click.echo(
            f"{what} {beton}: {m.num_images:,} images, {m.num_classes:,} classes, {i.size_bytes:,} bytes, "
            f"sha256 {i.sha256}"
        )
    if failed:
        raise UserError(f"{failed} of {len(betons)} betons failed verification")


if __name__ == "__main__":
    main()
