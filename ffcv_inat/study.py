"""The study's facts, in one place: class-set sizes, the three curve families, the downstream
targets. The sweep's plan (`sweep/plan.py`) and the analysis (`analyze/`) both read them here.
"""

from __future__ import annotations

from .classes import NUM_ANIMAL_CLASSES, NUM_IMAGENET_CLASSES

# Classes of each full pretraining subset: A = the animal classes, NA = the rest, all = ImageNet.
FULL_SIZE = {"A": NUM_ANIMAL_CLASSES, "NA": NUM_IMAGENET_CLASSES - NUM_ANIMAL_CLASSES, "all": NUM_IMAGENET_CLASSES}
# Family (a curve of the paper's Figures 3, 4, 6) -> the full subset that ends it. R-k draws
# from all 1,000 classes, so R's end point is "all" (R-1000 would be the same class set).
FAMILY_END = {"A": "A", "NA": "NA", "R": "all"}
FAMILIES = tuple(FAMILY_END)

# What a downstream run is evaluated on (results table's `target`, the plan's `target`).
INAT = "inat-mini-a"
IMAGENET_A = "imagenet-a"

# Dataset sizes, for estimates made before a beton exists (its manifest then has the count).
IMAGENET_TRAIN_IMAGES = 1_281_167  # ImageNet-1k train, all 1,000 classes
INAT_MINI_PER_SPECIES = 50  # iNat-2021 train_mini: 50 images of every species
INAT_ANIMAL_SPECIES = 5_388  # kingdom Animalia among iNat-2021's 10,000 species
IMAGENET_VAL_PER_CLASS = 50  # ImageNet-1k val
INAT_VAL_PER_SPECIES = 10  # iNat-2021 val
# A photo as a beton stores it (<= 512 px, JPEG q90, ffcv's tables included): the 1,000 ImageNet
# photos of ajschumacher/imagen written by `ffcv-bench prepare real-photos` made a beton of
# 56,647,104 bytes (2-core dev VM, 2026-12-04).
STORED_IMAGE_BYTES = 56_647
STORED_IMAGE_SOURCE = "56.6 kB a photo: 1,000 ImageNet photos (ajschumacher/imagen) as a beton stores them"


def planned_images(dataset: str, split: str, classes: int, per_class: int = INAT_MINI_PER_SPECIES) -> int:
    """Images of a beton not written yet, from the dataset's known size: ImageNet's train
    (1,281.2 a class on average) or val (50 a class); iNat-Mini-A's train (50 a species), eval
    (`per_class` a species) or val (10 a species)."""
    if dataset == "imagenet":
        return (
            round(IMAGENET_TRAIN_IMAGES / NUM_IMAGENET_CLASSES * classes)
            if split == "train"
            else IMAGENET_VAL_PER_CLASS * classes
        )
    return {"train": INAT_MINI_PER_SPECIES, "eval": per_class, "val": INAT_VAL_PER_SPECIES}[split] * classes


# Expected share of animal classes among R-k's k random classes (398 of 1,000): Figure 6.
ANIMAL_SHARE = NUM_ANIMAL_CLASSES / NUM_IMAGENET_CLASSES


def family_size(family: str) -> int:
    """Classes at the end of a family's curve: A 398, NA 602, R 1,000."""
    return FULL_SIZE[FAMILY_END[family]]


def family_of(subset: str) -> str:
    """The curve a pretraining subset belongs to: A-k, NA-k -> A, NA; R-k and all -> R; else ""."""
    return {"A": "A", "NA": "NA", "R": "R", "all": "R"}.get(subset, "")


def num_pretrain_classes(subset: str, k: int | None) -> int | None:
    """x of the paper's curves: classes seen in pretraining (None: no pretraining, or unknown)."""
    if not subset:
        return None
    return k if k is not None else FULL_SIZE.get(subset)
