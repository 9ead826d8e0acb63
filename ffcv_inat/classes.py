"""The ImageNet-1K class table and the class subsets of the study (A, NA, R, X-k).

Everything here is a pure function of its arguments, so the same (subset, k, seed) gives
the same classes on every machine, for every split and every Python/NumPy version.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Iterable

from . import UserError

NUM_IMAGENET_CLASSES = 1000
# Indices 0-397 of the standard (sorted-wnid) order are animals: tench ... puffer.
NUM_ANIMAL_CLASSES = 398
SUBSETS = ("all", "A", "NA", "R")


@dataclass(frozen=True)
class ImageNetClass:
    index: int
    wnid: str
    name: str
    group: str  # "animal" (ImageNet-A) or "non-animal" (ImageNet-NA)


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1,000 ImageNet classes in the standard order (index = position of the sorted wnid)."""
    text = resources.files("ffcv_inat").joinpath("data/imagenet_classes.tsv").read_text()
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    classes = tuple(
        ImageNetClass(
            index=int(r["index"]),
            wnid=r["wnid"],
            name=r["name"],
            group="animal" if int(r["index"]) < NUM_ANIMAL_CLASSES else "non-animal",
        )
        for r in rows
    )
    assert len(classes) == NUM_IMAGENET_CLASSES
    assert [c.wnid for c in classes] == sorted(c.wnid for c in classes)
    return classes


def class_by_wnid() -> dict[str, ImageNetClass]:
    return {c.wnid: c for c in imagenet_classes()}


def subset_pool(subset: str) -> list[str]:
    """The wnids a subset draws from, in standard order."""
    wnids = [c.wnid for c in imagenet_classes()]
    if subset in ("all", "R"):
        return wnids
    if subset == "A":
        return wnids[:NUM_ANIMAL_CLASSES]
    if subset == "NA":
        return wnids[NUM_ANIMAL_CLASSES:]
    raise UserError(f"unknown subset {subset!r}: choose one of {', '.join(SUBSETS)}")


def seeded_rank(key: str, seed: int | str) -> str:
    """A stable pseudo-random sort key: sha256 of (seed, key).

    Used instead of numpy/random draws because their streams are not promised to stay the
    same across versions; a hash is. Taking the k items with the smallest rank is a uniform
    draw of k without replacement, and draws with the same seed are nested (k=100 is a
    subset of k=300), which keeps the paper's class-count curves comparable along x.
    """
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def draw(items: Iterable[str], k: int, seed: int | str) -> list[str]:
    """k items drawn uniformly at random (seeded) from items, returned sorted."""
    items = list(items)
    if k > len(items):
        raise ValueError(f"cannot draw {k} from {len(items)}")
    return sorted(sorted(items, key=lambda x: seeded_rank(x, seed))[:k])


def select_classes(subset: str, k: int | None = None, seed: int = 0) -> list[str]:
    """The ordered wnids of a subset; label i is the i-th wnid.

    all/A/NA without k: every class of the subset. With k: k classes drawn at random from
    it. R is "k random classes of all 1000" and so requires k.
    """
    pool = subset_pool(subset)
    if k is None:
        if subset == "R":
            raise UserError("subset R needs --k: the number of random classes to draw")
        return pool
    if k < 1:
        raise UserError(f"--k must be at least 1, got {k}")
    if k > len(pool):
        raise UserError(f"--k {k} is larger than subset {subset}, which has {len(pool)} classes")
    return draw(pool, k, seed)


def subset_label(subset: str, k: int | None) -> str:
    """Short display name: A, NA, all, R-100, NA-300."""
    return subset if k is None else f"{subset}-{k}"
