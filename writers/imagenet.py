"""ImageNet-1K subsets (DIR/{train,val}/<wnid>/*.JPEG) -> .beton."""

from __future__ import annotations

from pathlib import Path

from ffcv_inat import UserError
from ffcv_inat.beton import Manifest
from ffcv_inat.classes import class_by_wnid, select_classes

from .beton import BetonContents, ClassInfo, WriteOptions, write_beton

SPLITS = ("train", "val")


def list_class_images(data_dir: Path, split: str, wnids: list[str]) -> list[tuple[str, int]]:
    """(path, label) for every file of the chosen classes; label = position in wnids."""
    split_dir = Path(data_dir) / split
    if not split_dir.is_dir():
        raise UserError(f"ImageNet split folder not found: {split_dir}")
    samples = []
    for label, wnid in enumerate(wnids):
        class_dir = split_dir / wnid
        if not class_dir.is_dir():
            raise UserError(f"class folder missing: {class_dir}")
        files = sorted(f for f in class_dir.iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise UserError(f"class folder is empty: {class_dir}")
        samples.extend((str(f), label) for f in files)
    return samples


def write_imagenet(
    data_dir: str | Path,
    split: str,
    subset: str,
    k: int | None,
    seed: int,
    out: str | Path,
    opts: WriteOptions,
    overwrite: bool = False,
) -> Manifest:
    if split not in SPLITS:
        raise UserError(f"ImageNet split must be one of {', '.join(SPLITS)}, got {split!r}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"ImageNet data dir not found: {data_dir}")
    wnids = select_classes(subset, k, seed)
    table = class_by_wnid()
    classes = [ClassInfo(w, table[w].name, table[w].group) for w in wnids]
    samples = list_class_images(data_dir, split, wnids)
    contents = BetonContents("imagenet", split, subset, k, seed if k is not None else None)
    return write_beton(out, samples, classes, contents, opts, overwrite=overwrite, root=data_dir)
