"""`write-beton --from PARENT.beton --out NAME.view.json`: an ImageNet subset as a view of a beton
that holds all its classes, written in about a second from the parent's manifest and label
table (no image data read). See ffcv_inat/beton/view.py for what a view is."""

from __future__ import annotations

from pathlib import Path

from ffcv_inat import UserError
from ffcv_inat.atomic import write_text_atomic
from ffcv_inat.beton import (
    VIEW_SUFFIX,
    Manifest,
    check_beton,
    is_view,
    read_labels,
    read_layout,
    relative_parent,
    view_of,
)
from ffcv_inat.classes import select_classes


def check_view_out(out: str | Path, overwrite: bool) -> Path:
    out = Path(out)
    if not is_view(out):
        raise UserError(f"--out of a view (--from) must end in {VIEW_SUFFIX}, got {out}")
    if not out.parent.is_dir():
        raise UserError(f"output folder does not exist: {out.parent}")
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists: pass --overwrite to replace it")
    return out


def write_view(
    parent: str | Path, subset: str, k: int | None, seed: int, out: str | Path, overwrite: bool = False
) -> Manifest:
    """The view of `subset` (`k` classes drawn with `seed` when given) of `parent`, written to `out`."""
    out = check_view_out(out, overwrite)
    wnids = select_classes(subset, k, seed)  # a bad subset or k fails before any read
    parent = Path(parent)
    if is_view(parent):
        raise UserError(f"--from {parent}: a view's parent must be a beton, not another view")
    parent_manifest = check_beton(parent)
    if parent_manifest.dataset != "imagenet":
        raise UserError(f"--from {parent}: holds {parent_manifest.dataset}; views are of ImageNet betons")
    labels = read_labels(parent, read_layout(parent))
    contents = {"subset": subset, "k": k, "seed": seed if k is not None else None}
    m = view_of(parent_manifest, labels, wnids, relative_parent(out, parent), contents, name=str(parent))
    write_text_atomic(out, m.to_json())
    return m
