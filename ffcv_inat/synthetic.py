"""Small synthetic datasets in the real layouts, for tests and the demo.

`make_imagenet` writes DIR/{train,val}/<wnid>/*.JPEG with the real 1,000 wnids;
`make_inat` writes an iNat-2021 tree with train.json, train_mini.json and val.json whose
categories mirror the real taxonomy (kingdoms, the eleven supercategories in their real
proportions, image_dir_name). Image content is a function of the class (colour, stripe
angle and frequency), plus per-image jitter and noise, so a network can learn it; in iNat,
species of one supercategory share a texture family so that features transfer.

`make_study_data` is the one maker of synthetic *study* data (an ImageNet tree beside an
iNat-2021 tree, as the study reads them): `make demo`, the trainer demo and the sweep's smoke
grid each take a named preset of STUDY_PRESETS, which are the only place their sizes live.

    python -m ffcv_inat.synthetic OUT_DIR [--preset smoke] [--odd-files]
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import click
import numpy as np
from PIL import Image

from .classes import imagenet_classes, select_classes
from .command_line import CONTEXT_SETTINGS

# iNat-2021 species per supercategory (10,000 in all), with a representative taxon path.
INAT_SUPERCATEGORIES = {
    "Plants": (4271, ("Plantae", "Tracheophyta", "Magnoliopsida")),
    "Insects": (2526, ("Animalia", "Arthropoda", "Insecta")),
    "Birds": (1486, ("Animalia", "Chordata", "Aves")),
    "Fungi": (341, ("Fungi", "Basidiomycota", "Agaricomycetes")),
    "Reptiles": (313, ("Animalia", "Chordata", "Reptilia")),
    "Mammals": (246, ("Animalia", "Chordata", "Mammalia")),
    "Ray-finned Fishes": (183, ("Animalia", "Chordata", "Actinopterygii")),
    "Amphibians": (170, ("Animalia", "Chordata", "Amphibia")),
    "Mollusks": (169, ("Animalia", "Mollusca", "Gastropoda")),
    "Arachnids": (153, ("Animalia", "Arthropoda", "Arachnida")),
    "Animalia": (142, ("Animalia", "Annelida", "Clitellata")),
}
ODD_KINDS = ("grayscale", "cmyk", "png_named_jpeg", "truncated", "empty", "not_an_image")


def _stable_rng(*key) -> np.random.Generator:
    digest = hashlib.sha256(":".join(map(str, key)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def class_image(class_key: str, image_index: int, size: int, family: str | None = None) -> np.ndarray:
    """An RGB uint8 image whose colour and stripes are set by the class, jittered per image."""
    c = _stable_rng("class", class_key)
    f = _stable_rng("family", family) if family is not None else c
    i = _stable_rng("image", class_key, image_index)
    base = c.uniform(40, 215, size=3)
    angle = f.uniform(0, np.pi) + c.normal(0, 0.25)
    freq = f.uniform(2, 8) * c.uniform(0.8, 1.25)
    yy, xx = np.mgrid[0:size, 0:size] / size
    phase = i.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
    amp = c.uniform(30, 70)
    img = base[None, None, :] + amp * wave[..., None] * c.choice([-1.0, 1.0], size=3)
    img = img * i.uniform(0.85, 1.15) + i.normal(0, 8, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _save_jpeg(path: Path, array: np.ndarray, quality: int = 95) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="JPEG", quality=quality)


def write_odd_file(path: Path, kind: str, array: np.ndarray) -> None:
    """Files real datasets contain: odd colour spaces or formats, and broken files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    if kind == "grayscale":
        img.convert("L").save(path, format="JPEG")
    elif kind == "cmyk":
        img.convert("CMYK").save(path, format="JPEG")
    elif kind == "png_named_jpeg":
        img.save(path, format="PNG")
    elif kind == "truncated":
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=95)
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_an_image":
        path.write_text("this is not an image\n")
    else:
        raise ValueError(f"unknown odd file kind {kind!r}")


def _write_class_image(job: tuple[Path, str, int, int]) -> None:
    path, wnid, idx, size = job
    _save_jpeg(path, class_image(wnid, idx, size))


def make_imagenet(
    root: str | Path,
    train_per_class: int = 3,
    val_per_class: int = 1,
    size: int = 48,
    wnids: list[str] | None = None,
    odd_files: bool = False,
    workers: int = 1,
) -> Path:
    """ImageNet layout with the real wnids (all 1,000 unless `wnids` is given).

    With odd_files, the first class's train folder also gets one file of each ODD_KINDS,
    named `odd_<kind>.JPEG`. workers > 1 makes the images in parallel (large sizes).
    """
    root = Path(root)
    wnids = wnids or [c.wnid for c in imagenet_classes()]
    jobs = []
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for wnid in wnids:
            for j in range(n):
                idx = j if split == "train" else 10_000 + j
                jobs.append((root / split / wnid / f"{wnid}_{idx}.JPEG", wnid, idx, size))
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pool.map(_write_class_image, jobs, chunksize=16)
    else:
        for job in jobs:
            _write_class_image(job)
    if odd_files:
        first = wnids[0]
        for n, kind in enumerate(ODD_KINDS):
            write_odd_file(root / "train" / first / f"odd_{kind}.JPEG", kind, class_image(first, 500 + n, size))
    return root


def species_counts(num_species: int) -> dict[str, int]:
    """Species per supercategory in the real proportions (largest remainder, at least 1 each)."""
    total = sum(n for n, _ in INAT_SUPERCATEGORIES.values())
    names = list(INAT_SUPERCATEGORIES)
    if num_species < len(names):
        raise ValueError(f"need at least {len(names)} species, one per supercategory")
    exact = {s: num_species * INAT_SUPERCATEGORIES[s][0] / total for s in names}
    counts = {s: max(1, int(exact[s])) for s in names}
    by_remainder = sorted(names, key=lambda s: exact[s] - int(exact[s]), reverse=True)
    i = 0
    while sum(counts.values()) < num_species:
        counts[by_remainder[i % len(names)]] += 1
        i += 1
    while sum(counts.values()) > num_species:  # the minimum of 1 can overshoot
        biggest = max(names, key=lambda s: counts[s])
        counts[biggest] -= 1
    return counts


@dataclass
class _Img:
    id: int
    file_name: str
    category_id: int


def _inat_categories(num_species: int) -> list[dict]:
    rows = []
    for sc, n in species_counts(num_species).items():
        kingdom, phylum, klass = INAT_SUPERCATEGORIES[sc][1]
        for j in range(n):
            order, family, genus = f"Order{sc[:3]}{j % 3}", f"Family{sc[:3]}{j % 5}", f"Genus{sc[:3]}{j}"
            epithet = f"synthetica{j}"
            rows.append(
                dict(
                    supercategory=sc,
                    kingdom=kingdom,
                    phylum=phylum,
                    **{"class": klass},
                    order=order,
                    family=family,
                    genus=genus,
                    specific_epithet=epithet,
                    name=f"{genus} {epithet}",
                    common_name=f"Synthetic {sc.lower()} {j}",
                )
            )
    # Real category ids follow the sorted taxonomy, so animals come first as in iNat-2021.
    rows.sort(key=lambda r: (r["kingdom"], r["phylum"], r["class"], r["order"], r["family"], r["name"]))
    for cid, r in enumerate(rows):
        r["id"] = cid
        r["image_dir_name"] = "_".join(
            [
                f"{cid:05d}",
                r["kingdom"],
                r["phylum"],
                r["class"],
                r["order"],
                r["family"],
                r["genus"],
                r["specific_epithet"],
            ]
        )
    return rows


def make_inat(
    root: str | Path,
    num_species: int = 60,
    train_mini_per_class: int = 4,
    train_extra_per_class: int = 6,
    val_per_class: int = 2,
    size: int = 48,
    odd_files: bool = False,
) -> Path:
    """iNat-2021 layout: train/ (mini + extra images per species), train_mini/ (the same
    photos as train's mini part, same uuid, another id), val/, and the three JSON files.

    With odd_files, the first animal species gets a grayscale and a truncated train_mini
    image (both also in train).
    """
    root = Path(root)
    cats = _inat_categories(num_species)
    ids = iter(range(1, 10**9))
    split_images: dict[str, list[_Img]] = {"train": [], "train_mini": [], "val": []}
    odd = {}
    for cat in cats:
        cid, d = cat["id"], cat["image_dir_name"]
        for j in range(train_mini_per_class + train_extra_per_class):
            name = f"{uuid.UUID(bytes=hashlib.md5(f'{cid}:{j}'.encode()).digest())}.jpg"
            split_images["train"].append(_Img(next(ids), f"train/{d}/{name}", cid))
            if j < train_mini_per_class:
                split_images["train_mini"].append(_Img(next(ids), f"train_mini/{d}/{name}", cid))
                if odd_files and cid == 0 and j < 2:
                    odd[name] = ("grayscale", "truncated")[j]
        for j in range(val_per_class):
            name = f"{uuid.UUID(bytes=hashlib.md5(f'val:{cid}:{j}'.encode()).digest())}.jpg"
            split_images["val"].append(_Img(next(ids), f"val/{d}/{name}", cid))
    family = {c["id"]: c["supercategory"] for c in cats}
    for split, imgs in split_images.items():
        for n, img in enumerate(imgs):
            name = Path(img.file_name).name
            j = int(hashlib.md5(name.encode()).hexdigest(), 16) % 10**6
            array = class_image(f"inat{img.category_id}", j, size, family=family[img.category_id])
            if name in odd and split != "val":
                write_odd_file(root / img.file_name, odd[name], array)
            else:
                _save_jpeg(root / img.file_name, array)
        json_name = {"train": "train.json", "train_mini": "train_mini.json", "val": "val.json"}[split]
        data = {
            "info": {"description": f"synthetic iNat-2021 {split} made by ffcv_inat.synthetic"},
            "images": [{"id": i.id, "file_name": i.file_name, "width": size, "height": size} for i in imgs],
            "annotations": [{"id": i.id, "image_id": i.id, "category_id": i.category_id} for i in imgs],
            "categories": cats,
        }
        (root / json_name).write_text(json.dumps(data))
    return root


@dataclass(frozen=True)
class StudyData:
    """What one synthetic copy of the study's data holds: OUT/imagenet (real wnids, train/ and
    val/) and OUT/inat2021 (the real taxonomy; iNat-Mini-A keeps its animal species)."""

    imagenet_train: int  # train images per ImageNet class
    imagenet_val: int  # val images per ImageNet class
    inat_species: int  # species of all kingdoms, in the real proportions (at least 11)
    inat_train_mini: int  # train_mini images per species: iNat-Mini-A's training set
    inat_train_extra: int  # further train images per species: the pool of the paper's eval split
    inat_val: int  # val images per species
    size: int  # image side in pixels
    # ImageNet classes written: (subset, k, seed) of classes.select_classes; None = all 1,000.
    imagenet_classes: tuple[str, int | None, int] | None = None
    odd_files: bool = False  # grayscale, CMYK, PNG-as-JPEG and broken files, as real data has


STUDY_PRESETS = {
    # `make demo` steps 1-2 and 4: every beton kind at 64 px, odd files for the writer's
    # report, enough images for a loader benchmark.
    "demo": StudyData(
        imagenet_train=4,
        imagenet_val=2,
        inat_species=120,
        inat_train_mini=10,
        inat_train_extra=8,
        inat_val=4,
        size=64,
        odd_files=True,
    ),
    # `python -m ffcv_inat.training.demo`: only the 8 ImageNet-A classes it pretrains on, with
    # enough images per class that smoke_cpu.yaml's 3 epochs learn them.
    "train-demo": StudyData(
        imagenet_train=24,
        imagenet_val=6,
        inat_species=40,
        inat_train_mini=6,
        inat_train_extra=0,
        inat_val=3,
        size=40,
        imagenet_classes=("A", 8, 0),
    ),
    # The sweep's smoke grid (32 px, every run 4 epochs of 3 steps of 16): 6 train images per
    # class give R-8 its 3 batches an epoch; 24 species are 16 animal ones (chance 1/16),
    # each with 6 train_mini images (6 batches to draw from) and 6 more for the eval split.
    "smoke": StudyData(
        imagenet_train=6, imagenet_val=1, inat_species=24, inat_train_mini=6, inat_train_extra=6, inat_val=2, size=32
    ),
}


def study_preset(name: str) -> StudyData:
    try:
        return STUDY_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown synthetic data preset {name!r}: choose from {', '.join(STUDY_PRESETS)}") from None


def make_study_data(out: str | Path, data: StudyData | str, workers: int = 1) -> tuple[Path, Path]:
    """Write OUT/imagenet and OUT/inat2021 as `data` (a StudyData or a preset name) says;
    return their paths."""
    d = study_preset(data) if isinstance(data, str) else data
    out = Path(out)
    wnids = select_classes(*d.imagenet_classes) if d.imagenet_classes else None
    imagenet = make_imagenet(
        out / "imagenet",
        d.imagenet_train,
        d.imagenet_val,
        size=d.size,
        wnids=wnids,
        odd_files=d.odd_files,
        workers=workers,
    )
    inat = make_inat(
        out / "inat2021",
        num_species=d.inat_species,
        train_mini_per_class=d.inat_train_mini,
        train_extra_per_class=d.inat_train_extra,
        val_per_class=d.inat_val,
        size=d.size,
        odd_files=d.odd_files,
    )
    return imagenet, inat


# The command's sizes when no --preset is given.
CLI_DEFAULT = StudyData(
    imagenet_train=3, imagenet_val=1, inat_species=60, inat_train_mini=4, inat_train_extra=6, inat_val=2, size=48
)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--preset",
    type=click.Choice(sorted(STUDY_PRESETS)),
    default=None,
    help="Start from a named preset (the options below, where given, change it).",
)
@click.option(
    "--imagenet-train", type=int, default=None, help=f"Train images per ImageNet class [{CLI_DEFAULT.imagenet_train}]."
)
@click.option(
    "--imagenet-val", type=int, default=None, help=f"Val images per ImageNet class [{CLI_DEFAULT.imagenet_val}]."
)
@click.option(
    "--inat-species",
    type=int,
    default=None,
    help=f"Species in the synthetic iNat, all kingdoms [{CLI_DEFAULT.inat_species}].",
)
@click.option("--size", type=int, default=None, help=f"Image side in pixels [{CLI_DEFAULT.size}].")
@click.option("--odd-files", is_flag=True, default=None, help="Add grayscale, CMYK, PNG-as-JPEG and broken files.")
def main(out_dir, preset, imagenet_train, imagenet_val, inat_species, size, odd_files):
    """Write OUT_DIR/imagenet and OUT_DIR/inat2021."""
    given = dict(
        imagenet_train=imagenet_train,
        imagenet_val=imagenet_val,
        inat_species=inat_species,
        size=size,
        odd_files=odd_files,
    )
    data = replace(
        STUDY_PRESETS[preset] if preset else CLI_DEFAULT, **{k: v for k, v in given.items() if v is not None}
    )
    imagenet, inat = make_study_data(out_dir, data)
    click.echo(f"synthetic ImageNet: {imagenet}\nsynthetic iNat-2021: {inat}")


if __name__ == "__main__":
    main()
