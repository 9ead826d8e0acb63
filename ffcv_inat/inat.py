"""iNaturalist-2021 metadata: the animal species (iNat-Mini-A) and the images of each split.

The dataset's JSON files follow COCO (`images`, `annotations`, `categories`). Pure functions
over the parsed JSON, so the split logic is tested without images.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from . import UserError
from .classes import draw

ANIMAL_KINGDOM = "Animalia"
SPLITS = ("train", "eval", "val")
# Which JSON file each split reads.
SPLIT_JSON = {"train": "train_mini.json", "eval": "train.json", "val": "val.json"}


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    supercategory: str


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the dataset root
    category_id: int


# The only keys the splits read: every other key of every object (a photo's date, place, licence,
# rights holder; a category's common name and ranks) is dropped as the file is parsed, and image
# and annotation entries become records, so only these stay in memory (`ffcv-bench inat-json`).
KEPT_KEYS = frozenset(
    {
        "images",
        "annotations",
        "categories",
        "id",
        "file_name",
        "image_id",
        "category_id",
        "name",
        "supercategory",
        "kingdom",
    }
)
PACKED_SUFFIXES = (".tar.gz", ".tgz", ".gz", ".zip")


class ImageRecord(NamedTuple):
    """An entry of `images`, as much of it as the splits read (a tuple: a third of a dict's memory)."""

    id: int
    file_name: str


class AnnotationRecord(NamedTuple):
    """An entry of `annotations`, as much of it as the splits read."""

    image_id: int
    category_id: int


def _kept(pairs: list[tuple[str, object]]):
    """An object as it is parsed: an image or annotation entry as its record, any other object
    (a category, the file itself) as a dict of its KEPT_KEYS."""
    d = {k: v for k, v in pairs if k in KEPT_KEYS}
    if "file_name" in d:
        return ImageRecord(d.get("id"), d["file_name"])
    if "image_id" in d:
        return AnnotationRecord(d["image_id"], d.get("category_id"))
    return d


class _Stream:
    """A JSON file read 16 MB at a time and decoded a value at a time, so that the file's text is
    never held whole (1.1 GB for iNat-2021's train.json, as much again as what the splits keep)."""

    CHUNK = 1 << 24
    SPACE = " \t\r\n"
    # A value that fails to decode this close to the buffer's end may only be cut short by it:
    # read on. Anything earlier is malformed, said at once (not after reading the rest of the file).
    CUT_SHORT = 1 << 16

    def __init__(self, f):
        self.f, self.buf, self.pos, self.eof = f, "", 0, False
        self.start = 0  # characters of the file before self.buf
        self.decoder = json.JSONDecoder(object_pairs_hook=_kept)

    def _more(self) -> bool:
        chunk = "" if self.eof else self.f.read(self.CHUNK)
        self.eof = not chunk
        if chunk:
            self.start += self.pos
            self.buf, self.pos = self.buf[self.pos :] + chunk, 0
        return bool(chunk)

    def fail(self, what: str, pos: int):
        raise ValueError(f"{what} at character {max(0, self.start + pos):,}")

    def next_char(self) -> str:
        """The next character that is not white space, consumed ("" at the end of the file)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in self.SPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                self.pos += 1
                return self.buf[self.pos - 1]
            if not self._more():
                return ""

    def expect(self, chars: str) -> str:
        c = self.next_char()
        if not c or c not in chars:
            self.fail(f"expected one of {chars!r}, found {c or 'the end of the file'!r}", self.pos - 1)
        return c

    def value(self):
        if not self.next_char():  # past the white space and the value's first character,
            self.fail("a value expected, found the end of the file", self.pos)
        self.pos -= 1  # then back onto it
        while True:
            try:
                v, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if len(self.buf) - e.pos > self.CUT_SHORT or not self._more():
                    self.fail(e.msg, e.pos)
                continue
            # a number ending near the buffer's end may go on in the next chunk (1. | 25, 2e | 3)
            if isinstance(v, (int, float)) and len(self.buf) - end < 2 and self._more():
                continue
            self.pos = end
            return v

    def key(self) -> str:
        k = self.value()
        if not isinstance(k, str):
            self.fail(f"an object key must be a string, found {k!r}", self.pos)
        return k


def _parse_annotations(f) -> dict:
    """A COCO-style annotation file's top-level object, its `images` and `annotations` arrays
    decoded element by element; every object keeps only KEPT_KEYS. Malformed text is a
    ValueError naming the character where it is."""
    s, out = _Stream(f), {}
    s.expect("{")
    if s.next_char() != "}":
        s.pos -= 1
        while True:
            key = s.key()
            s.expect(":")
            if key in ("images", "annotations"):
                s.expect("[")
                items: list = []
                if s.next_char() != "]":
                    s.pos -= 1
                    while True:
                        items.append(s.value())
                        if s.expect(",]") == "]":
                            break
                out[key] = items
            else:
                v = s.value()
                if key in KEPT_KEYS:
                    out[key] = v
            if s.expect(",}") == "}":
                break
    if s.next_char():
        s.fail("text after the end of the JSON object", s.pos - 1)
    return out


def load_json(data_dir: Path, filename: str) -> dict:
    """An iNat-2021 annotation file, parsed keeping only what the splits read: `images` as
    ImageRecords, `annotations` as AnnotationRecords, `categories` as dicts of KEPT_KEYS."""
    path = Path(data_dir) / filename
    if not path.is_file():
        packed = next(
            (path.with_name(path.name + s) for s in PACKED_SUFFIXES if path.with_name(path.name + s).is_file()), None
        )
        if packed is not None:
            raise UserError(
                f"iNat annotation file not found: {path}; {packed.name} is there, still packed: {unpack_hint(packed)}"
            )
        raise UserError(f"iNat annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = _parse_annotations(f)
    except (ValueError, UnicodeDecodeError) as e:  # json's errors are ValueErrors too
        raise UserError(f"{path} is not valid JSON: {e}") from None
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise UserError(f"{path} has no {key!r} key: not an iNat-2021 annotation file")
    return data


def unpack_hint(packed: Path) -> str:
    """The command that unpacks an annotation archive where the file is expected."""
    if packed.name.endswith(".zip"):
        return f"unzip {packed} -d {packed.parent}"
    if packed.name.endswith((".tar.gz", ".tgz")):
        return f"tar -xzf {packed} -C {packed.parent}"
    return f"gunzip -k {packed}"


def animal_categories(data: dict) -> list[Category]:
    """Kingdom Animalia categories sorted by category id; label i = position i."""
    cats = [
        Category(int(c["id"]), c["name"], c.get("supercategory", ""))
        for c in data["categories"]
        if c.get("kingdom") == ANIMAL_KINGDOM
    ]
    return sorted(cats, key=lambda c: c.id)


def _image_path(path_of: dict, image_id) -> str:
    try:
        return path_of[image_id]
    except KeyError:
        raise UserError(f"an annotation names image id {image_id!r}, which the file's images do not list") from None


def samples_by_category(data: dict, category_ids: set[int]) -> dict[int, list[Sample]]:
    """Images of the given categories, grouped by category, each group sorted by path."""
    path_of = {img.id: img.file_name for img in data["images"]}
    groups: dict[int, list[Sample]] = defaultdict(list)
    for ann in data["annotations"]:
        cid = int(ann.category_id)
        if cid in category_ids:
            groups[cid].append(Sample(_image_path(path_of, ann.image_id), cid))
    return {cid: sorted(g, key=lambda s: s.path) for cid, g in groups.items()}


def image_key(path: str) -> str:
    """Identity of an image across train.json and train_mini.json.

    The same photo appears as train/<species dir>/<uuid>.jpg and
    train_mini/<species dir>/<uuid>.jpg, so the split folder is dropped.
    """
    parts = PurePosixPath(path).parts
    return "/".join(parts[1:]) if len(parts) > 1 else path


def check_mini_in_train(train_mini: dict, ids: set[int], train_keys: set[str]) -> None:
    """Every train_mini image of the species `ids` is among train.json's images of them (by
    `image_key`): else the evaluation set, train.json's images that are not train_mini's, could
    hold training images without a sign of it (a repackaged copy whose paths differ)."""
    path_of = {img.id: img.file_name for img in train_mini["images"]}
    mini = [_image_path(path_of, a.image_id) for a in train_mini["annotations"] if int(a.category_id) in ids]
    missing = [p for p in mini if image_key(p) not in train_keys]
    if missing:
        raise UserError(
            f"{len(missing):,} of the {len(mini):,} train_mini images of the iNat-Mini-A species are not in "
            f"train.json (e.g. {missing[0]}): the evaluation set is train.json's images that are not in train_mini, "
            "so it could hold training images; use train.json and train_mini.json of the same iNat-2021 release, "
            "their paths as published (train/<species>/<id>.jpg, train_mini/<species>/<id>.jpg)"
        )


def eval_samples(
    train: dict, train_mini: dict, categories: list[Category], per_class: int, seed: int
) -> dict[int, list[Sample]]:
    """The paper's evaluation set: per_class images per species from train.json, drawn at
    random (seeded) from those not in train_mini.json. A species with fewer eligible images
    gets all of them."""
    ids = {c.id for c in categories}
    mini_keys = {image_key(img.file_name) for img in train_mini["images"]}
    by_category = samples_by_category(train, ids)
    check_mini_in_train(train_mini, ids, {image_key(s.path) for g in by_category.values() for s in g})
    out = {}
    for cid, group in by_category.items():
        eligible = {s.path: s for s in group if image_key(s.path) not in mini_keys}
        chosen = draw(eligible, min(per_class, len(eligible)), seed=f"{seed}:{cid}")
        out[cid] = [eligible[p] for p in chosen]
    return out


def split_samples(
    data_dir: Path, split: str, per_class: int = 50, seed: int = 0
) -> tuple[list[Category], dict[int, list[Sample]], dict]:
    """Categories (label order), samples per category, and notes for the manifest."""
    if split not in SPLITS:
        raise UserError(f"unknown iNat split {split!r}: choose one of {', '.join(SPLITS)}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"iNat data dir not found: {data_dir}")
    # Labels always come from train_mini.json so that all three splits agree.
    mini = load_json(data_dir, SPLIT_JSON["train"])
    categories = animal_categories(mini)
    if not categories:
        raise UserError(f"{data_dir / SPLIT_JSON['train']} has no categories of kingdom {ANIMAL_KINGDOM}")
    ids = {c.id for c in categories}
    notes: dict = {"annotation_file": SPLIT_JSON[split]}
    if split == "train":
        groups = samples_by_category(mini, ids)
    elif split == "val":
        groups = samples_by_category(load_json(data_dir, SPLIT_JSON["val"]), ids)
    else:
        groups = eval_samples(load_json(data_dir, SPLIT_JSON["eval"]), mini, categories, per_class, seed)
        short = {c.id: len(groups.get(c.id, [])) for c in categories if len(groups.get(c.id, [])) < per_class}
        notes.update(per_class=per_class, short_classes=short)
    return categories, groups, notes
