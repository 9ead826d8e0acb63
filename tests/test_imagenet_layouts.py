"""ImageNet's layouts as they are distributed (writers/imagenet_layouts.py): class folders, Kaggle's,
the official flat val/ with the devkit, and flat files named by wnid. Each tree is made here from
the same synthetic class-folder ImageNet and must give the same images per class; the devkit's
meta.mat (written with scipy) numbers the classes in an order that is not the sorted wnids'."""

import hashlib
import io
import random
import shutil
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.io import savemat

from ffcv_inat import UserError
from ffcv_inat.beton import read_manifest
from ffcv_inat.classes import imagenet_classes, select_classes
from ffcv_inat.synthetic import make_imagenet
from ffcv_inat.writers.cli import main as write_beton
from ffcv_inat.writers.imagenet import list_class_images
from ffcv_inat.writers.imagenet_layouts import find_split

WNIDS = select_classes("A", 3, 0) + select_classes("NA", 2, 0)
ALL = [c.wnid for c in imagenet_classes()]
# The devkit's ILSVRC2012_ID of each class: a seeded shuffle, so sorted order is wrong.
IDS = dict(zip(ALL, random.Random(0).sample(range(1, 1001), 1000)))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return make_imagenet(
        tmp_path_factory.mktemp("classfolders"), train_per_class=2, val_per_class=3, size=24, wnids=WNIDS
    )


def digests(samples) -> dict[int, set[str]]:
    """label -> the md5s of its files: the same images whatever they are named."""
    out: dict[int, set[str]] = {}
    for path, label in samples:
        out.setdefault(label, set()).add(hashlib.md5(open(path, "rb").read()).hexdigest())
    return out


def flat_val(folders, out) -> dict[str, str]:
    """val/ as the official archive has it: ILSVRC2012_val_<n>.JPEG in a shuffled order; {stem: wnid}."""
    files = sorted(folders.glob("val/*/*.JPEG"))
    random.Random(1).shuffle(files)
    out.mkdir(parents=True)
    labels = {}
    for n, f in enumerate(files, 1):
        stem = f"ILSVRC2012_val_{n:08d}"
        shutil.copy(f, out / f"{stem}.JPEG")
        labels[stem] = f.parent.name
    return labels


def write_devkit(root, labels: dict[str, str]) -> None:
    data = root / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True)
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{IDS[labels[s]]}\n" for s in sorted(labels)))
    synsets = np.zeros(1000, dtype=[("ILSVRC2012_ID", object), ("WNID", object), ("num_children", object)])
    for i, w in enumerate(ALL):
        synsets[i] = (IDS[w], w, 0)
    savemat(data / "meta.mat", {"synsets": synsets})


def kaggle(folders, root) -> None:
    base = root / "ILSVRC" / "Data" / "CLS-LOC"
    shutil.copytree(folders / "train", base / "train")
    labels = flat_val(folders, base / "val")
    rows = [f"{s},{w} 1 2 30 40 {w} 5 6 70 80" for s, w in sorted(labels.items())]
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{c.wnid} {c.name}\n" for c in imagenet_classes()))


def test_every_layout_gives_the_class_folders_images_per_class(folders, tmp_path):
    want = {split: digests(list_class_images(folders, split, WNIDS)) for split in ("train", "val")}
    assert find_split(folders, "val").layout == "class-folders"

    kag = tmp_path / "kaggle"
    kaggle(folders, kag)
    for split in ("train", "val"):
        assert find_split(kag, split).layout == "kaggle"
        assert digests(list_class_images(kag, split, WNIDS)) == want[split]

    dev = tmp_path / "devkit"
    write_devkit(dev, flat_val(folders, dev / "val"))
    images = find_split(dev, "val")  # the devkit found beside the images
    assert images.layout == "devkit" and "labels from the devkit" in images.said
    assert digests(list_class_images(dev, "val", WNIDS)) == want["val"]
    packed = tmp_path / "devkit.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        tar.add(dev / "ILSVRC2012_devkit_t12", arcname="ILSVRC2012_devkit_t12")
    shutil.rmtree(dev / "ILSVRC2012_devkit_t12")
    assert digests(list_class_images(dev, "val", WNIDS, devkit=packed)) == want["val"]

    named = tmp_path / "named" / "train"
    named.mkdir(parents=True)
    for f in folders.glob("train/*/*.JPEG"):
        shutil.copy(f, named / f.name)  # make_imagenet names them <wnid>_<n>.JPEG, as ImageNet's train does
    assert find_split(named.parent, "train").layout == "wnid-names"
    assert digests(list_class_images(named.parent, "train", WNIDS)) == want["train"]


@pytest.mark.timeout(120)
def test_write_beton_says_the_layout_and_records_it(folders, tmp_path):
    dev = tmp_path / "devkit"
    write_devkit(dev, flat_val(folders, dev / "val"))
    out = tmp_path / "val.beton"
    r = CliRunner().invoke(
        write_beton,
        ["--data-dir", str(dev), "--split", "val", "--subset", "A", "--k", "3", "--out", str(out), "--workers", "1"],
    )
    assert r.exit_code == 0, r.output
    assert (
        f"ImageNet val: the official flat {dev / 'val'}, labels from the devkit {dev / 'ILSVRC2012_devkit_t12'}"
        in r.output
    )
    m = read_manifest(out)
    assert m.notes["layout"] == "devkit" and m.notes["devkit"] == "ILSVRC2012_devkit_t12"
    assert [c.id for c in m.classes] == select_classes("A", 3, 0) and m.num_images == 9


def one_line(fn, *fragments):
    with pytest.raises(UserError) as e:
        fn()
    assert "\n" not in str(e.value) and all(f in str(e.value) for f in fragments), str(e.value)


def test_each_bad_layout_is_one_line_naming_the_file(folders, tmp_path):
    kag = tmp_path / "kaggle"
    kaggle(folders, kag)
    csv = kag / "LOC_val_solution.csv"
    good = csv.read_text()
    csv.write_text(good.replace(f",{WNIDS[0]} ", ",n99999999 ", 1))
    one_line(lambda: find_split(kag, "val"), f"{csv} line ", "n99999999 is not an ImageNet-1K class")
    first = good.splitlines()[1].split(",")[0]
    csv.write_text(good.replace(good.splitlines()[1], f"{first},", 1))
    one_line(lambda: find_split(kag, "val"), f"{csv} line 2: no image id or no wnid")
    csv.write_bytes(good.encode() + b"\xff\xfe")
    one_line(lambda: find_split(kag, "val"), f"{csv}: not text")
    csv.write_text(good)
    val = kag / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    shutil.copy(next(val.iterdir()), val / "ILSVRC2012_val_00099999.JPEG")
    one_line(lambda: find_split(kag, "val"), "ILSVRC2012_val_00099999.JPEG: no label in ", "LOC_val_solution.csv")
    (val / "ILSVRC2012_val_00099999.JPEG").unlink()
    (val / "ILSVRC2012_val_00000002.JPEG").unlink()
    one_line(
        lambda: find_split(kag, "val"),
        "1 of them not in ",
        "(e.g. ILSVRC2012_val_00000002)",
        "extract the whole archive",
    )

    dev = tmp_path / "devkit"
    labels = flat_val(folders, dev / "val")
    one_line(lambda: find_split(dev, "val"), "its labels are in the devkit", "--devkit PATH")
    write_devkit(dev, labels)
    meta = dev / "ILSVRC2012_devkit_t12" / "data" / "meta.mat"
    meta.write_bytes(meta.read_bytes()[:100])  # cut short
    one_line(lambda: find_split(dev, "val"), "not the devkit's meta.mat")
    shutil.rmtree(dev / "ILSVRC2012_devkit_t12")
    one_line(lambda: find_split(dev, "val", devkit=tmp_path / "nowhere"), "--devkit ", "not found")

    tars = tmp_path / "tars" / "train"
    tars.mkdir(parents=True)
    for w in WNIDS:
        with tarfile.open(tars / f"{w}.tar", "w") as tar:
            data = b"x"
            info = tarfile.TarInfo(f"{w}_1.JPEG")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    one_line(lambda: find_split(tars.parent, "train"), f"{tars} holds 5 unpacked .tar files", "tar -xf")

    odd = tmp_path / "odd" / "val"
    odd.mkdir(parents=True)
    (odd / "cat.jpg").write_bytes(b"x")
    one_line(lambda: find_split(odd.parent, "val"), "no ImageNet layout", "(e.g. cat.jpg)")
    one_line(lambda: find_split(tmp_path / "none", "val"), "ImageNet split folder not found")
