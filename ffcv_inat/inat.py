"""iNaturalist-2021 metadata: the animal species (iNat-Mini-A) and the images of each split.

The dataset's JSON files follow COCO (`images`, `annotations`, `categories`). Pure functions
over the parsed JSON, so the split logic is tested without images.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

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


def load_json(data_dir: Path, filename: str) -> dict:
    path = Path(data_dir) / filename
    if not path.is_file():
        raise UserError(f"iNat annotation file not found: {path}")
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise UserError(f"{path} has no {key!r} key: not an iNat-2021 annotation file")
    return data


def animal_categories(data: dict) -> list[Category]:
    """Kingdom Animalia categories sorted by category id; label i = position i."""
    cats = [
        Category(int(c["id"]), c["name"], c.get("supercategory", ""))
        for c in data["categories"]
        if c.get("kingdom") == ANIMAL_KINGDOM
    ]
    return sorted(cats, key=lambda c: c.id)


def samples_by_category(data: dict, category_ids: set[int]) -> dict[int, list[Sample]]:
    """Images of the given categories, grouped by category, each group sorted by path."""
    path_of = {img["id"]: img["file_name"] for img in data["images"]}
    groups: dict[int, list[Sample]] = defaultdict(list)
    for ann in data["annotations"]:
        cid = int(ann["category_id"])
        if cid in category_ids:
            groups[cid].append(Sample(path_of[ann["image_id"]], cid))
    return {cid: sorted(g, key=lambda s: s.path) for cid, g in groups.items()}


def image_key(path: str) -> str:
    """Identity of an image across train.json and train_mini.json.

    The same photo appears as train/<species dir>/<uuid>.jpg and
    train_mini/<species dir>/<uuid>.jpg, so the split folder is dropped.
    """
    parts = PurePosixPath(path).parts
    return "/".join(parts[1:]) if len(parts) > 1 else path


def eval_samples(
    train: dict, train_mini: dict, categories: list[Category], per_class: int, seed: int
) -> dict[int, list[Sample]]:
    """The paper's evaluation set: per_class images per species from train.json, drawn at
    random (seeded) from those not in train_mini.json. A species with fewer eligible images
    gets all of them."""
    ids = {c.id for c in categories}
    mini_keys = {image_key(img["file_name"]) for img in train_mini["images"]}
    out = {}
    for cid, group in samples_by_category(train, ids).items():
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
