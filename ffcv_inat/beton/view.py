"""Views: a class subset of a beton as one small file, `NAME.view.json`, instead of a copy.

A view is a manifest (the classes in the view's label order, 0..k-1, with their image counts)
that names its parent beton (`Manifest.view`: the parent's path, its integrity record when the
view was written, each class's label in the parent, and the parent's samples it holds as
[start, stop) ranges). Readers give a view's path wherever a beton's goes: `check_beton` checks
it against its parent (`integrity.check_view`), `make_loader` opens the parent with the view's sample
indices and hands out the view's labels. Crops stay a function of the sample's index in the
parent. `write-beton --from PARENT` writes one (writers/view.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import UserError, __version__
from .manifest import Manifest, ViewOf

VIEW_SUFFIX = ".view.json"


def is_view(path: str | Path) -> bool:
    """Whether `path` names a view (NAME.view.json) rather than a beton."""
    return str(path).endswith(VIEW_SUFFIX)


def index_ranges(indices: np.ndarray) -> list[list[int]]:
    """Ascending unique sample indices as [start, stop) ranges: [0 1 2 5 6] -> [[0, 3], [5, 7]]."""
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(indices)]])
    return [[int(indices[a]), int(indices[b - 1]) + 1] for a, b in zip(starts, stops)]


def range_indices(ranges: list[list[int]], num_samples: int) -> np.ndarray:
    """The sample indices of [start, stop) ranges, checked: ascending, none repeated, all within
    the parent's `num_samples`; a ValueError says what is wrong."""
    if not ranges:
        return np.zeros(0, dtype=np.int64)
    r = np.asarray(ranges, dtype=np.int64)
    if r.ndim != 2 or r.shape[1] != 2 or (r[:, 1] <= r[:, 0]).any():
        raise ValueError("its indices are not [start, stop) ranges with start < stop")
    if (r[1:, 0] < r[:-1, 1]).any():
        raise ValueError("its indices repeat or are out of order (ranges overlap)")
    if r[0, 0] < 0 or r[-1, 1] > num_samples:
        raise ValueError(f"its indices run outside the parent's {num_samples:,} samples (0..{num_samples - 1:,})")
    return np.concatenate([np.arange(a, b) for a, b in r])


def relative_parent(view: Path, parent: Path) -> str:
    """How a view names its parent: relative to the view's folder where possible (the two
    then move together), else absolute."""
    try:
        return os.path.relpath(parent.resolve(), view.resolve().parent)
    except ValueError:  # another drive
        return str(parent.resolve())


def parent_of(view: str | Path, m: Manifest) -> Path:
    """The parent beton of the view at `view`."""
    parent = Path(m.view.parent)
    return parent if parent.is_absolute() else Path(view).parent / parent


def beton_file(path: str | Path, m: Manifest) -> Path:
    """The file ffcv opens for `path`: the beton itself, or a view's parent."""
    return parent_of(path, m) if m.view is not None else Path(path)


def sample_indices(m: Manifest) -> np.ndarray | None:
    """The parent samples a view holds (checked by `check_view`); None for a beton (all of it)."""
    return None if m.view is None else range_indices(m.view.indices, m.view.integrity.num_samples)


def label_lookup(m: Manifest) -> np.ndarray | None:
    """parent label -> the view's label (-1 for classes outside the view); None for a beton."""
    if m.view is None:
        return None
    lookup = np.full(max(m.view.parent_labels) + 1, -1, dtype=np.int64)
    lookup[m.view.parent_labels] = np.arange(len(m.view.parent_labels))
    return lookup


def parent_differences(m: Manifest, parent: Manifest) -> list[str]:
    """What differs between the parent's integrity now and the record the view was written against."""
    was, now = m.view.integrity, parent.integrity
    if now is None:
        return ["records no size, count or checksum: rewrite it, or record them with write-beton --verify --record"]
    return [
        f"{what} {getattr(now, key)!s} (the view was written against {getattr(was, key)!s})"
        for key, what in (("size_bytes", "size"), ("num_samples", "samples"), ("sha256", "sha256"))
        if getattr(now, key) != getattr(was, key)
    ]


def label_problems(m: Manifest, labels: np.ndarray, indices: np.ndarray) -> list[str]:
    """The view's samples against its classes: every sample of one of them, as many per class
    as the view says."""
    lookup = label_lookup(m)
    parent_labels = labels[indices]
    mapped = np.where(parent_labels < len(lookup), lookup[np.minimum(parent_labels, len(lookup) - 1)], -1)
    outside = np.flatnonzero(mapped < 0)
    if len(outside):
        i = outside[0]
        return [f"sample {int(indices[i]):,} has parent label {int(parent_labels[i])}, not a class of it"]
    counts = np.bincount(mapped, minlength=m.num_classes)
    for c, n in zip(m.classes, counts):
        if n != c.num_images:
            return [f"class {c.id} has {int(n):,} images among the samples it names, the view says {c.num_images:,}"]
    return []


def view_of(
    parent_manifest: Manifest, labels: np.ndarray, wnids: list[str], parent_ref: str, contents: dict, name: str = ""
) -> Manifest:
    """The view of `wnids` (its label order) of a parent beton (its manifest and every sample's
        label), pure: its classes with their counts, its indices, what it is a view of. `contents`:
        the view's subset, k and seed; `parent_ref` is how the view names its parent, `name` how
    errors do (default: parent_ref). A class the parent lacks is a one-line UserError."""
    name = name or parent_ref
    from .manifest import ClassEntry

    if parent_manifest.integrity is None:
        raise UserError(f"{name}: records no integrity (size, count, sha256): a view needs it")
    by_id = {c.id: c for c in parent_manifest.classes}
    missing = [w for w in wnids if w not in by_id]
    if missing:
        raise UserError(
            f"{name} lacks class {missing[0]}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
            + f" of {contents['subset']}: a view needs a parent that holds all its classes"
        )
    parent_labels = [by_id[w].label for w in wnids]
    lookup = np.full(parent_manifest.num_classes, -1, dtype=np.int64)
    lookup[parent_labels] = np.arange(len(wnids))
    mapped = lookup[labels]
    indices = np.flatnonzero(mapped >= 0)
    counts = np.bincount(mapped[indices], minlength=len(wnids))
    classes = [
        ClassEntry(label=i, id=w, name=by_id[w].name, supercategory=by_id[w].supercategory, num_images=int(counts[i]))
        for i, w in enumerate(wnids)
    ]
    return Manifest(
        dataset=parent_manifest.dataset,
        split=parent_manifest.split,
        subset=contents["subset"],
        k=contents["k"],
        seed=contents["seed"],
        num_images=len(indices),
        classes=classes,
        write_options=dict(parent_manifest.write_options),
        notes={"view_of": Path(parent_ref).name},
        version=__version__,
        view=ViewOf(parent_ref, parent_manifest.integrity, parent_labels, index_ranges(indices)),
    )
