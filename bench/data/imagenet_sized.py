"""A beton with ImageNet's sample count and classes, of tiny images, and copies of its views:
what `ffcv-bench view-cost` compares a view with (a loader opened on a parent of 1.28 M
samples against one opened on a beton of the view's samples alone).

    ffcv-bench prepare imagenet-sized OUT_DIR [--samples 1281167] [--side 8] [--subset R --k 100]

Writes OUT_DIR/imagenet_all_train.beton and its manifest: `--samples` raw `--side`-px noise
images (a pool of 256, sample i showing pool[i % 256]) in ImageNet's 1,000 classes, label
order and contiguous blocks, as write-beton lays out ImageNet; ~200 B a sample at 8 px, so
the whole 1.28 M take ~250 MB. With `--subset`, the subset's view of it and `write_copy`'s
standalone beton of the view's samples, pixel for pixel, with the view's labels and manifest.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from ffcv_inat import UserError
from ffcv_inat.atomic import write_text_atomic
from ffcv_inat.beton import (
    ClassEntry,
    Manifest,
    check_beton,
    integrity_of,
    label_lookup,
    manifest_path,
    parent_of,
    sample_indices,
)
from ffcv_inat.classes import class_by_wnid, select_classes
from ffcv_inat.command_line import check_at_least
from ffcv_inat.study import IMAGENET_TRAIN_IMAGES

PARENT_NAME = "imagenet_all_train.beton"
POOL = 256  # distinct images: enough that no two neighbours look alike, small enough to hold


def class_counts(samples: int, classes: int) -> np.ndarray:
    """Samples per class, as even as they go (the first `samples % classes` get one more)."""
    return np.full(classes, samples // classes) + (np.arange(classes) < samples % classes)


class TinyImages:
    """Sample i: pool image i % POOL, its label the class whose contiguous block holds i; the
    images of any subset of indices are a pure function of those indices."""

    def __init__(self, counts: np.ndarray, side: int, indices: np.ndarray | None = None, lookup=None):
        self.ends = np.cumsum(counts)
        self.pool = np.random.default_rng(0).integers(0, 256, (POOL, side, side, 3), dtype=np.uint8)
        self.indices = np.arange(int(self.ends[-1])) if indices is None else indices
        self.lookup = lookup  # parent label -> the copy's label (None: the parent's own)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        parent = int(self.indices[i])
        label = int(np.searchsorted(self.ends, parent, side="right"))
        return self.pool[parent % POOL], int(self.lookup[label]) if self.lookup is not None else label


def _write_tiny(out: Path, images: TinyImages, side: int, workers: int) -> None:
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    fields = {"image": RGBImageField(write_mode="raw", max_resolution=side), "label": IntField()}
    DatasetWriter(str(out), fields, num_workers=workers).from_indexed_dataset(images, chunksize=4096)


def write_imagenet_sized(
    out_dir: str | Path, samples: int = IMAGENET_TRAIN_IMAGES, side: int = 8, workers: int = 1, echo: Callable = print
) -> Path:
    """OUT_DIR/imagenet_all_train.beton with its manifest (ImageNet's classes, integrity recorded)."""
    check_at_least(("--samples", samples, 1000), ("--side", side, 8), ("--workers", workers, 1))
    out = Path(out_dir) / PARENT_NAME
    if out.exists():
        raise UserError(f"{out} exists: remove it to make the data again")
    out.parent.mkdir(parents=True, exist_ok=True)
    wnids = select_classes("all")
    counts = class_counts(samples, len(wnids))
    start = time.perf_counter()
    _write_tiny(out, TinyImages(counts, side), side, workers)
    table = class_by_wnid()
    manifest = Manifest(
        dataset="imagenet",
        split="train",
        subset="all",
        k=None,
        seed=None,
        num_images=samples,
        classes=[
            ClassEntry(i, w, table[w].name, table[w].group, int(c)) for i, (w, c) in enumerate(zip(wnids, counts))
        ],
        write_options={"write_mode": "raw", "max_res": side},
        notes={"images": f"{side}x{side} px noise, ffcv-bench prepare imagenet-sized", "side": side},
        integrity=integrity_of(out),
    )
    write_text_atomic(manifest_path(out), manifest.to_json())
    echo(f"wrote {out}: {samples:,} samples of {side} px, 1,000 classes in {time.perf_counter() - start:.1f} s")
    return out


def write_copy(view: str | Path, out: str | Path, workers: int = 1) -> Manifest:
    """The samples of `view` (of an imagenet-sized parent) as a standalone beton at `out`, in
    the parent's order, with the view's labels, classes and counts."""
    m = check_beton(view)
    parent = check_beton(parent_of(view, m))
    side = parent.notes.get("side")
    if side is None:
        raise UserError(f"{view}: its parent was not written by `ffcv-bench prepare imagenet-sized`")
    counts = np.array([c.num_images for c in parent.classes])
    out = Path(out)
    _write_tiny(out, TinyImages(counts, side, sample_indices(m), label_lookup(m)), side, workers)
    copy = replace(m, view=None, integrity=integrity_of(out), notes={**m.notes, "copy_of": str(view)})
    write_text_atomic(manifest_path(out), copy.to_json())
    return copy


def write_view_and_copy(parent: Path, subset: str, k: int | None, workers: int = 1, echo: Callable = print):
    """`subset` (k classes drawn with seed 0) of `parent` as a view and as its copy, beside the
    parent and named as write-beton names them; each kept when it exists."""
    from ffcv_inat.writers.cli import default_out_name
    from ffcv_inat.writers.view import write_view

    view = parent.parent / default_out_name("imagenet", "train", subset, k, 0, view=True)
    copy = parent.parent / default_out_name("imagenet", "train", subset, k, 0)
    if not view.exists():
        start = time.perf_counter()
        m = write_view(parent, subset, k, 0, view)
        echo(
            f"wrote {view}: {m.num_images:,} samples of {len(m.classes)} classes in {time.perf_counter() - start:.2f} s"
        )
    if not copy.exists():
        start = time.perf_counter()
        m = write_copy(view, copy, workers)
        echo(f"wrote {copy}: the same {m.num_images:,} samples as a beton in {time.perf_counter() - start:.1f} s")
    return view, copy
