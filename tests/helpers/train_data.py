"""Tiny synthetic betons for the trainer tests (real writers, real ffcv)."""

from pathlib import Path

from ffcv_inat.classes import select_classes
from ffcv_inat.synthetic import make_imagenet, make_inat
from ffcv_inat.writers.beton import WriteOptions
from ffcv_inat.writers.imagenet import write_imagenet
from ffcv_inat.writers.inat import write_inat_mini_a

SIZE = 40  # stored side; the smoke recipe trains and evaluates at 32 px


def imagenet_a_betons(root: Path, k: int = 4, train_per_class: int = 24, val_per_class: int = 6) -> tuple[Path, Path]:
    """(train, val) betons of k ImageNet-A classes drawn with seed 0."""
    root.mkdir(parents=True, exist_ok=True)
    make_imagenet(root / "imagenet", train_per_class, val_per_class, size=SIZE, wnids=select_classes("A", k, 0))
    opts = WriteOptions(max_res=SIZE, workers=2)
    out = root / "A_train.beton", root / "A_val.beton"
    for split, path in zip(("train", "val"), out):
        write_imagenet(root / "imagenet", split, "A", k, 0, path, opts)
    return out


def inat_betons(root: Path, num_species: int = 20) -> tuple[Path, Path]:
    """(train, val) betons of synthetic iNat-Mini-A (the animal species of num_species)."""
    root.mkdir(parents=True, exist_ok=True)
    make_inat(
        root / "inat",
        num_species=num_species,
        train_mini_per_class=4,
        train_extra_per_class=0,
        val_per_class=2,
        size=SIZE,
    )
    opts = WriteOptions(max_res=SIZE, workers=2)
    out = root / "inat_train.beton", root / "inat_val.beton"
    for split, path in zip(("train", "val"), out):
        write_inat_mini_a(root / "inat", split, path, opts)
    return out
