"""iNat-Mini-A split logic on the synthetic iNat-2021 tree (pure functions, no images read)."""

import json
from collections import Counter

from ffcv_inat.inat import image_key, load_json, split_samples
from ffcv_inat.synthetic import species_counts


def test_synthetic_taxonomy_mirrors_real(inat_dir):
    data = load_json(inat_dir, "train_mini.json")
    supers = Counter(c["supercategory"] for c in data["categories"])
    assert supers == Counter(species_counts(40))
    assert len(supers) == 11
    assert all(c["image_dir_name"].startswith(f"{c['id']:05d}_{c['kingdom']}") for c in data["categories"])
    assert species_counts(10_000)["Plants"] == 4271


def test_train_is_animals_of_train_mini_in_category_order(inat_dir):
    cats, groups, _ = split_samples(inat_dir, "train")
    all_cats = load_json(inat_dir, "train_mini.json")["categories"]
    animals = sorted(c["id"] for c in all_cats if c["kingdom"] == "Animalia")
    assert [c.id for c in cats] == animals
    assert {c.supercategory for c in cats}.isdisjoint({"Plants", "Fungi"})
    assert all(len(groups[c.id]) == 3 for c in cats)
    assert all(s.path.startswith("train_mini/") for g in groups.values() for s in g)


def test_all_splits_take_their_labels_from_train_mini(inat_dir, tmp_path):
    # The other files' category lists differ from train_mini's in order and content (train.json
    # reversed with an extra animal species, val.json reversed without the first one): reading
    # each split's own categories would give other labels.
    for name in ("train_mini.json", "train.json", "val.json"):
        data = load_json(inat_dir, name)
        cats = data["categories"] if name == "train_mini.json" else data["categories"][::-1]
        if name == "train.json":
            cats = [*cats, {**cats[0], "id": 99_999, "kingdom": "Animalia", "name": "extra species"}]
        if name == "val.json":
            first_animal = min(c["id"] for c in cats if c["kingdom"] == "Animalia")
            cats = [c for c in cats if c["id"] != first_animal]
        (tmp_path / name).write_text(json.dumps({**data, "categories": cats}))
    mini_animals = sorted(
        c["id"] for c in load_json(inat_dir, "train_mini.json")["categories"] if c["kingdom"] == "Animalia"
    )
    orders = [[c.id for c in split_samples(tmp_path, s)[0]] for s in ("train", "eval", "val")]
    assert orders == [mini_animals] * 3


def test_eval_never_contains_train_mini(inat_dir):
    mini = {image_key(i["file_name"]) for i in load_json(inat_dir, "train_mini.json")["images"]}
    cats, groups, notes = split_samples(inat_dir, "eval", per_class=4, seed=0)
    assert all(len(groups[c.id]) == 4 for c in cats)
    chosen = [s for g in groups.values() for s in g]
    assert all(s.path.startswith("train/") for s in chosen)
    assert not {image_key(s.path) for s in chosen} & mini
    assert notes["short_classes"] == {}


def test_eval_draw_seeded_and_short_classes_reported(inat_dir):
    a = split_samples(inat_dir, "eval", per_class=2, seed=0)[1]
    b = split_samples(inat_dir, "eval", per_class=2, seed=0)[1]
    c = split_samples(inat_dir, "eval", per_class=2, seed=1)[1]
    assert a == b and a != c
    cats, groups, notes = split_samples(inat_dir, "eval", per_class=50, seed=0)
    # 5 images per species are in train but not train_mini: each species gets all 5.
    assert all(len(groups[c.id]) == 5 for c in cats)
    assert notes["short_classes"] == {c.id: 5 for c in cats}


def test_image_key_matches_across_splits():
    assert image_key("train/00001_A_B/x.jpg") == image_key("train_mini/00001_A_B/x.jpg")
    # ... and tells other photos apart: another file, or the same file name in another species.
    assert image_key("train/00001_A_B/x.jpg") != image_key("train_mini/00001_A_B/y.jpg")
    assert image_key("train/00001_A_B/x.jpg") != image_key("train/00002_A_B/x.jpg")
