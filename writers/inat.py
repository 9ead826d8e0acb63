"""iNat-Mini-A (the animal species of iNaturalist-2021 mini) -> .beton."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ffcv_inat.beton import Manifest
from ffcv_inat.inat import split_samples

from .beton import BetonContents, ClassInfo, WriteOptions, write_beton


def write_inat_mini_a(
    data_dir: str | Path,
    split: str,
    out: str | Path,
    opts: WriteOptions,
    per_class: int = 50,
    seed: int = 0,
    overwrite: bool = False,
) -> Manifest:
    data_dir = Path(data_dir)
    opts = replace(opts, pass_through=True)  # iNat's photos are <= 500 px baseline JPEGs: stored as they come
    categories, groups, notes = split_samples(data_dir, split, per_class=per_class, seed=seed)
    samples = [(str(data_dir / s.path), label) for label, cat in enumerate(categories) for s in groups.get(cat.id, [])]
    classes = [ClassInfo(str(c.id), c.name, c.supercategory) for c in categories]
    contents = BetonContents("inat-mini-a", split, "A", None, seed if split == "eval" else None, notes)
    return write_beton(out, samples, classes, contents, opts, overwrite=overwrite, root=data_dir)
