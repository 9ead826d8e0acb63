"""iNat-Mini-A split logic on the synthetic iNat-2021 tree (pure functions, no images read)."""

import json
from collections import Counter

import pytest

from ffcv_inat import UserError
from ffcv_inat.inat import AnnotationRecord, ImageRecord, image_key, load_json, split_samples
from ffcv_inat.synthetic import species_counts


def test_synthetic_taxonomy_mirrors_real(inat_dir):
    data = json.loads((inat_dir / "train_mini.json").read_text())  # as written, every key
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
        data = json.loads((inat_dir / name).read_text())
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
    mini = {image_key(i.file_name) for i in load_json(inat_dir, "train_mini.json")["images"]}
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


def raises_one_line(fn, *fragments):
    with pytest.raises(UserError) as e:
        fn()
    message = str(e.value)
    assert "\n" not in message and all(f in message for f in fragments), message


def _copy_jsons(inat_dir, tmp_path, edit=None):
    """The three annotation files of `inat_dir` in tmp_path, train.json passed through `edit`."""
    for name in ("train_mini.json", "train.json", "val.json"):
        data = json.loads((inat_dir / name).read_text())
        if name == "train.json" and edit is not None:
            data = edit(data)
        (tmp_path / name).write_text(json.dumps(data))


def test_eval_refuses_a_train_json_whose_paths_do_not_match_train_minis(inat_dir, tmp_path):
    # A repackaged copy: train.json's photos flattened into one folder, so no train_mini photo
    # matches one of them and every candidate would look unused.
    def flatten(data):
        for img in data["images"]:
            img["file_name"] = "train/" + img["file_name"].rsplit("/", 1)[1]
        return data

    _copy_jsons(inat_dir, tmp_path, flatten)
    raises_one_line(
        lambda: split_samples(tmp_path, "eval", per_class=2),
        "of the iNat-Mini-A species are not in train.json (e.g. train_mini/",
        "could hold training images",
    )

    # One photo missing from train.json is enough to refuse.
    def drop_one(data):
        mini_name = json.loads((inat_dir / "train_mini.json").read_text())["images"][0]["file_name"]
        gone = {i["id"] for i in data["images"] if image_key(i["file_name"]) == image_key(mini_name)}
        data["images"] = [i for i in data["images"] if i["id"] not in gone]
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] not in gone]
        return data

    _copy_jsons(inat_dir, tmp_path, drop_one)
    raises_one_line(lambda: split_samples(tmp_path, "eval", per_class=2), "1 of the ")
    assert split_samples(tmp_path, "train")[1]  # the other splits never compare the two


def test_a_packed_annotation_file_gets_the_command_that_unpacks_it(inat_dir, tmp_path):
    _copy_jsons(inat_dir, tmp_path)
    (tmp_path / "train_mini.json").rename(tmp_path / "train_mini.json.tar.gz")
    raises_one_line(
        lambda: split_samples(tmp_path, "train"),
        "train_mini.json.tar.gz is there, still packed: tar -xzf ",
        f"-C {tmp_path}",
    )


def test_annotation_files_keep_only_the_keys_the_splits_read(inat_dir):
    data = load_json(inat_dir, "train.json")
    raw = json.loads((inat_dir / "train.json").read_text())
    assert set(raw["images"][0]) - {"id", "file_name"}  # the file has more than the splits read
    assert data["images"] == [ImageRecord(i["id"], i["file_name"]) for i in raw["images"]]
    assert data["annotations"] == [AnnotationRecord(a["image_id"], a["category_id"]) for a in raw["annotations"]]
    assert data["categories"] == [
        {k: c[k] for k in ("id", "name", "supercategory", "kingdom") if k in c} for c in raw["categories"]
    ]


def test_annotation_files_are_read_a_chunk_at_a_time_to_the_same_result(inat_dir, tmp_path, monkeypatch):
    from ffcv_inat import inat

    whole = load_json(inat_dir, "train.json")
    monkeypatch.setattr(inat._Stream, "CHUNK", 7)  # every value cut across chunk boundaries
    assert load_json(inat_dir, "train.json") == whole
    # numbers cut by a chunk's end (1. | 25, 2e | 3) read whole, whatever the chunk size
    numbers = json.dumps({"images": [1.25, 2e3, -7], "annotations": [], "categories": [], "n": 12.5})
    (tmp_path / "numbers.json").write_text(numbers)
    for chunk in range(1, 12):
        monkeypatch.setattr(inat._Stream, "CHUNK", chunk)
        assert load_json(tmp_path, "numbers.json") == {
            "images": [1.25, 2000.0, -7],
            "annotations": [],
            "categories": [],
        }
    monkeypatch.setattr(inat._Stream, "CHUNK", 7)
    text = (inat_dir / "train.json").read_text()
    for name, bad in (
        ("cut.json", text[: len(text) // 2]),
        ("bad.json", text.replace(":", ";", 1)),
        ("list.json", "[]"),
        ("key.json", "{{}: 1}"),
        ("after.json", text + " x"),
    ):
        (tmp_path / name).write_text(bad)
        raises_one_line(lambda: load_json(tmp_path, name), f"{tmp_path / name} is not valid JSON")
