"""Real photos for the benchmarks: a beton of the public repository ajschumacher/imagen (1,000
ImageNet photos of 200 wnids, named `imagen/<wnid>_<id>_<name>.jpg`), so that loader and decode
figures come from real JPEGs: the bench's synthetic ones (stripes and noise) decode 1.64x slower
per core than these photos at the same settings (2-core dev VM, one thread, quality 90).

    git clone https://github.com/ajschumacher/imagen /data/imagen
    ffcv-bench prepare real-photos /data/imagen bench/real_photos [--max-images 1000]

Writes OUT_DIR/photos/<wnid>/<file> (symbolic links to the photos, grouped by the wnid their
names begin with: an ImageFolder tree for the PyTorch pipeline) and OUT_DIR/real.beton with its
manifest, written with the writer's default options (longest side 512 px, JPEG quality 90).
Neither is committed (bench/real_photos/ is ignored). `bench/gpu/device_run.sh` measures this beton
first when it exists (`REAL_BETON`).
"""

from __future__ import annotations

from pathlib import Path


from ffcv_inat import UserError
from ffcv_inat.command_line import check_at_least

BETON_NAME = "real.beton"
PHOTOS_DIR = "photos"
SOURCE = "ajschumacher/imagen"  # what the rows say these images are


def photo_files(source: str | Path) -> list[Path]:
    """The photos of a clone of ajschumacher/imagen (its imagen/ folder) or of a folder of them,
    sorted by name: `<wnid>_<id>_<name>.jpg`."""
    root = Path(source)
    folder = root / "imagen" if (root / "imagen").is_dir() else root
    files = sorted(p for p in folder.glob("*.jpg") if p.name.startswith("n") and "_" in p.name)
    if not files:
        raise UserError(f"{source}: no photos named <wnid>_<id>_<name>.jpg (a clone of {SOURCE}?)")
    return files


def link_image_folder(files: list[Path], out: Path) -> Path:
    """out/<wnid>/<file> links to `files`; the wnid is the name's first part."""
    for f in files:
        d = out / f.name.split("_", 1)[0]
        d.mkdir(parents=True, exist_ok=True)
        (d / f.name).symlink_to(f.resolve())
    return out


def write_real_photos(source: str | Path, out_dir: str | Path, max_images: int, workers: int = 1, echo=print) -> Path:
    """The first `max_images` photos (by name) as an ImageFolder tree of links and a beton."""
    from ffcv_inat.bench.data.image_folder import list_image_folder, write_source_beton

    check_at_least(("--max-images", max_images, 1))
    out = Path(out_dir)
    photos, beton = out / PHOTOS_DIR, out / BETON_NAME
    for p in (photos, beton):
        if p.exists():
            raise UserError(f"{p} exists: remove it to write the real photos again")
    files = photo_files(source)[:max_images]
    link_image_folder(files, photos)
    m = write_source_beton(list_image_folder(photos), beton, workers=workers)
    echo(
        f"wrote {beton}: {m.num_images} real photos of {SOURCE}, {m.num_classes} classes, "
        f"{beton.stat().st_size / 2**20:.1f} MiB; skipped {len(m.skipped)}"
    )
    return beton
