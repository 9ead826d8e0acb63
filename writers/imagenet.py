"""ImageNet-1K subsets -> .beton, from any of the layouts ImageNet comes in (`imagenet_layouts`)."""

from __future__ import annotations

import sys
from pathlib import Path

from ffcv_inat import UserError
from ffcv_inat.beton import Manifest
from ffcv_inat.classes import class_by_wnid, select_classes

from .beton import BetonContents, ClassInfo, WriteOptions, write_beton
from .imagenet_layouts import SplitImages, find_split

SPLITS = ("train", "val")


def list_class_images(
    data_dir: str | Path, split: str, wnids: list[str], devkit: str | Path | None = None
) -> list[tuple[str, int]]:
    """(path, label) for every file of the chosen classes, in any layout; label = position in wnids."""
    return class_samples(find_split(data_dir, split, devkit), wnids)


def class_samples(images: SplitImages, wnids: list[str]) -> list[tuple[str, int]]:
    return [(str(f), label) for label, wnid in enumerate(wnids) for f in images.files(wnid)]


def write_imagenet(
    data_dir: str | Path,
    split: str,
    subset: str,
    k: int | None,
    seed: int,
    out: str | Path,
    opts: WriteOptions,
    overwrite: bool = False,
    devkit: str | Path | None = None,
) -> Manifest:
    """The beton of `subset` of ImageNet's `split` under `data_dir`, in whichever layout it is
    (`imagenet_layouts`; said on stderr, recorded in the manifest's notes)."""
    if split not in SPLITS:
        raise UserError(f"ImageNet split must be one of {', '.join(SPLITS)}, got {split!r}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"ImageNet data dir not found: {data_dir}")
    wnids = select_classes(subset, k, seed)
    table = class_by_wnid()
    classes = [ClassInfo(w, table[w].name, table[w].group) for w in wnids]
    images = find_split(data_dir, split, devkit)
    print(f"ImageNet {split}: {images.said}", file=sys.stderr)
    samples = class_samples(images, wnids)
    notes = {"layout": images.layout, **images.details}
    contents = BetonContents("imagenet", split, subset, k, seed if k is not None else None, notes)
    return write_beton(out, samples, classes, contents, opts, overwrite=overwrite, root=data_dir)
