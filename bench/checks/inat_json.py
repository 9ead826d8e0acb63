"""What reading iNat-2021's `train.json` costs: peak memory and seconds, as every key is kept
(a plain `json.load`) and as `ffcv_inat.inat.load_json` reads it (only the keys the splits read).

    ffcv-bench inat-json WORK_DIR [--images 2686843] [--categories 10000]

Writes WORK_DIR/train.json in iNat-2021's schema (COCO: `images` with id, size, file name,
licence, rights holder, date, place; `annotations`; `categories` with their seven ranks), of
synthetic values the size of the real ones, then reads it each way in a fresh Python process:
its peak RSS (ru_maxrss) and wall seconds. Deletes the file afterwards unless --keep.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

INAT_TRAIN_IMAGES = 2_686_843  # iNat-2021 train.json
INAT_CATEGORIES = 10_000
RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "specific_epithet")


def _category(i: int) -> dict:
    ranks = {r: f"{r.title()}{i % (7 + 13 * n) or ''}" for n, r in enumerate(RANKS)}
    name = f"{ranks['genus']} {ranks['specific_epithet']}"
    return {
        "id": i,
        "name": name,
        "common_name": f"Common {name}",
        "supercategory": "Animalia" if i % 2 else "Plants",
        **ranks,
        "image_dir_name": f"{i:05d}_" + "_".join(ranks.values()),
    }


def _image(i: int, category: dict) -> dict:
    return {
        "id": i,
        "width": 500,
        "height": 375,
        "file_name": f"train/{category['image_dir_name']}/{uuid.UUID(int=i * 2654435761 % 2**128)}.jpg",
        "license": 1 + i % 6,
        "rights_holder": f"Observer {i % 50_000}",
        "date": f"20{10 + i % 11}-0{1 + i % 9}-1{i % 10} 12:34:56+00:00",
        "latitude": 40.0 + (i % 1000) / 37.0,
        "longitude": -70.0 - (i % 1000) / 41.0,
        "location_uncertainty": i % 500,
    }


def write_train_json(path: Path, images: int, categories: int) -> int:
    """The file, written a record at a time (never held whole); its size in bytes."""
    cats = [_category(i) for i in range(categories)]
    with open(path, "w") as f:
        f.write('{"info": {"year": 2021, "version": "synthetic"}, "images": [')
        for i in range(images):
            f.write(("," if i else "") + json.dumps(_image(i, cats[i % categories])))
        f.write('], "annotations": [')
        for i in range(images):
            f.write(("," if i else "") + json.dumps({"id": i, "image_id": i, "category_id": i % categories}))
        f.write('], "categories": ' + json.dumps(cats) + ', "licenses": []}')
    return path.stat().st_size


READERS = {
    "json.load, every key": "import json; data = json.load(open(PATH))",
    "load_json, the keys the splits read": (
        "from pathlib import Path; from ffcv_inat.inat import load_json; "
        "data = load_json(Path(PATH).parent, Path(PATH).name)"
    ),
}
_MEASURE = """
import json, resource, sys, time
PATH = sys.argv[1]
start = time.perf_counter()
{read}
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "images": len(data["images"])}}))
"""


@dataclass(frozen=True)
class ReadCost:
    reader: str
    seconds: float
    peak_rss_mb: float
    images: int


def measure_read(path: Path, reader: str) -> ReadCost:
    """One reader in a fresh process."""
    code = _MEASURE.format(read=READERS[reader])
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return ReadCost(reader, r["seconds"], r["peak_rss_mb"], r["images"])


def run_inat_json(
    work: Path, images: int, categories: int, repeats: int, keep: bool, echo: Callable = print
) -> list[ReadCost]:
    work.mkdir(parents=True, exist_ok=True)
    path = work / "train.json"
    start = time.perf_counter()
    size = write_train_json(path, images, categories)
    echo(
        f"wrote {path}: {images:,} images, {categories:,} categories, {size / 1e6:,.0f} MB "
        f"in {time.perf_counter() - start:.0f} s"
    )
    costs = []
    try:
        for r in range(repeats):
            for reader in READERS if r % 2 == 0 else list(READERS)[::-1]:
                c = measure_read(path, reader)
                costs.append(c)
                echo(f"  {reader:38s} {c.seconds:6.1f} s, peak RSS {c.peak_rss_mb:,.0f} MiB ({c.images:,} images)")
    finally:
        if not keep:
            path.unlink()
    return costs
