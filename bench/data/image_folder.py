"""An ImageFolder tree (DIR/<class>/<image>) as the bench reads it: its listing as torchvision
sees it, its beton written with the writer's defaults, and the two matched image for image
(the loader bench's peers read the files, ffcv the beton)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ffcv_inat import UserError


@dataclass(frozen=True)
class SourceImages:
    """The images both pipelines read: ImageFolder's own listing, minus files the beton skipped."""

    root: Path
    classes: list[str]
    samples: list[tuple[str, int]]


def list_image_folder(images_dir: str | Path) -> SourceImages:
    """DIR/<class>/<image> as ImageFolder sees it: class folders sorted, label = position."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    root = Path(images_dir)
    if not root.is_dir():
        raise UserError(f"--images: not a folder: {root}")
    try:
        classes, class_to_idx = find_classes(str(root))
        samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
    except (FileNotFoundError, RuntimeError) as e:  # torchvision's words for "no classes"/"no images"
        raise UserError(f"--images {root}: not an ImageFolder tree DIR/<class>/<image> ({e})") from None
    return SourceImages(root, classes, samples)


def class_infos(classes: list[str]):
    """Real names when the folders are ImageNet wnids (e.g. <imagenet>/train), else the folder name."""
    from ffcv_inat.classes import class_by_wnid
    from ffcv_inat.writers.beton import ClassInfo

    table = class_by_wnid()
    if all(c in table for c in classes):
        return "imagenet", [ClassInfo(c, table[c].name, table[c].group) for c in classes]
    return "imagefolder", [ClassInfo(c, c, None) for c in classes]


def write_source_beton(source: SourceImages, out: Path, workers: int = 0):
    """Write `source` to `out` (+ manifest) with the writer's default options."""
    from ffcv_inat.writers.beton import BetonContents, WriteOptions, write_beton

    dataset, infos = class_infos(source.classes)
    return write_beton(
        out,
        source.samples,
        infos,
        BetonContents(dataset, source.root.name),
        WriteOptions(workers=workers),
        root=source.root,
    )


def matched_to_beton(source: SourceImages, manifest) -> SourceImages:
    """Drop the files the beton writer skipped, and refuse a beton of other images."""
    skipped = {s["path"] for s in manifest.skipped}

    def was_skipped(path: str) -> bool:
        # Skipped paths are relative to the writer's root, which may be DIR or a parent of it.
        return any(path == s or path.endswith("/" + s) for s in skipped)

    kept = [(p, y) for p, y in source.samples if not was_skipped(p)] if skipped else source.samples
    if len(kept) != manifest.num_images:
        raise UserError(
            f"the beton holds {manifest.num_images} images but {source.root} has {len(kept)} readable "
            "ones: both pipelines must read the same images (drop --beton to write it from DIR)"
        )
    return SourceImages(source.root, source.classes, kept)
