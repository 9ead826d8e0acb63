"""The manifest beside every beton (`NAME.json` next to `NAME.beton`).

It is the one source of truth for labels, class names and supercategories: the trainer, the
evaluator and the analysis read classes from here and never re-derive them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import UserError


@dataclass
class ClassEntry:
    label: int
    id: str  # ImageNet wnid or iNat category id (as a string)
    name: str
    supercategory: str | None
    num_images: int


@dataclass
class Integrity:
    """What the manifest describes, recorded at write time: checked before any read
    (size, count) and on demand (checksum); see `integrity`."""

    size_bytes: int  # the beton's size
    num_samples: int  # as ffcv's header states it
    sha256: str  # of the whole file, hex


@dataclass
class ViewOf:
    """What a view (`NAME.view.json`, see `view`) is a view of: its parent beton, the parent's
    integrity record when the view was written, each of the view's classes' label in the
    parent (in the view's label order), and the parent samples it holds, as ascending
    [start, stop) ranges of sample indices."""

    parent: str  # the parent beton's path, relative to the view's folder where possible
    integrity: Integrity  # the parent's, from its manifest
    parent_labels: list[int]
    indices: list[list[int]]


@dataclass
class Manifest:
    dataset: str  # "imagenet" or "inat-mini-a"
    split: str
    subset: str | None
    k: int | None
    seed: int | None
    num_images: int
    classes: list[ClassEntry]
    skipped: list[dict[str, str]] = field(default_factory=list)
    write_options: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    # None in manifests written before ffcv-inat recorded it (they still load, with a warning).
    integrity: Integrity | None = None
    # A view's: the beton it reads its samples from (its own integrity is then None).
    view: ViewOf | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_dict(cls, d: dict, source: str = "manifest") -> "Manifest":
        try:
            d = dict(d)
            d["classes"] = [ClassEntry(**c) for c in d["classes"]]
            if d.get("integrity") is not None:
                d["integrity"] = Integrity(**d["integrity"])
            if d.get("view") is not None:
                d["view"] = ViewOf(**{**d["view"], "integrity": Integrity(**d["view"]["integrity"])})
            m = cls(**d)
        except (KeyError, TypeError) as e:
            raise UserError(f"{source}: not a valid ffcv-inat manifest ({e})") from None
        if [c.label for c in m.classes] != list(range(len(m.classes))):
            raise UserError(f"{source}: class labels are not 0..n-1 in order")
        i = m.integrity
        if i is not None and not (
            isinstance(i.size_bytes, int)
            and isinstance(i.num_samples, int)
            and isinstance(i.sha256, str)
            and len(i.sha256) == 64
        ):
            raise UserError(
                f"{source}: integrity must hold size_bytes and num_samples (integers) and sha256 (64 hex digits)"
            )
        if i is not None and i.num_samples != m.num_images:
            raise UserError(f"{source}: integrity.num_samples {i.num_samples} differs from num_images {m.num_images}")
        return m


def manifest_path(beton: str | Path) -> Path:
    """NAME.beton -> NAME.json"""
    return Path(beton).with_suffix(".json")


def read_manifest(beton_or_json: str | Path) -> Manifest:
    path = Path(beton_or_json)
    if path.suffix != ".json":
        path = manifest_path(path)
    if not path.is_file():
        raise UserError(f"manifest not found: {path} (write-beton writes it beside the beton)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: invalid JSON ({e})") from None
    return Manifest.from_dict(data, source=str(path))
