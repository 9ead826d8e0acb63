"""What the beton integrity checks cost: the cheap check every reader runs, and the
sha256 that write-beton records and `--verify` recomputes.

    ffcv-bench beton-check /tmp/beton-bench [--gib 1.0] [--repeats 11]

1. Writes a ~1 GiB beton with ffcv's DatasetWriter (raw mode, 128-px random images from a
   small pool, 1,000 classes: ~20k samples, about what a 1 GB JPEG beton at max-res 512 holds),
   records its integrity as write-beton does, and times `check_beton`: median of `--repeats`
   runs with the file in the page cache (warm) and after evicting it (posix_fadvise DONTNEED
   on this one file: cold), then one sha256 of the whole file.
2. Times `check_beton` on an ImageNet-sized layout (1,281,167 samples, 1,000 classes): header,
   field table, metadata and allocation table as ffcv writes them, the data region left sparse
   (the cheap check never reads it), so it takes almost no disk.
Deletes both files afterwards and prints one line per measurement.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

from ffcv_inat.beton import (
    ALLOC_ENTRY,
    FIELD_DESC,
    FIELD_METADATA,
    FORMAT_VERSION,
    HEADER,
    INT_FIELD,
    RGB_FIELD,
    ClassEntry,
    Integrity,
    Manifest,
    check_beton,
    integrity_of,
    manifest_path,
    sha256_of,
)
from ffcv_inat.environment import cpu_name
from ffcv_inat.study import IMAGENET_TRAIN_IMAGES

SIDE = 128
CLASSES = 1000


class RandomImages:
    def __init__(self, n: int, pool: int = 64):
        rng = np.random.default_rng(0)
        self.pool = rng.integers(0, 256, (pool, SIDE, SIDE, 3), dtype=np.uint8)
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.pool[i % len(self.pool)], i % CLASSES


def _manifest(n: int, integrity: Integrity) -> Manifest:
    counts = np.bincount(np.arange(n) % CLASSES, minlength=CLASSES)
    return Manifest(
        dataset="bench",
        split="train",
        subset=None,
        k=None,
        seed=None,
        num_images=n,
        classes=[ClassEntry(i, f"c{i}", f"c{i}", None, int(c)) for i, c in enumerate(counts)],
        integrity=integrity,
    )


def write_real(path: Path, gib: float, workers: int) -> Manifest:
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    n = int(gib * 2**30 // (SIDE * SIDE * 3))
    writer = DatasetWriter(
        str(path),
        {"image": RGBImageField(write_mode="raw", max_resolution=SIDE), "label": IntField()},
        num_workers=workers,
    )
    writer.from_indexed_dataset(RandomImages(n), chunksize=256)
    start = time.perf_counter()
    integrity = integrity_of(path)
    seconds = time.perf_counter() - start
    m = _manifest(n, integrity)
    m.notes["sha256_seconds"] = seconds
    manifest_path(path).write_text(m.to_json())
    return m


def write_sparse_imagenet_layout(path: Path, n: int = IMAGENET_TRAIN_IMAGES, mean_bytes: int = 50_000) -> Manifest:
    """ffcv's layout for n JPEG samples of ~mean_bytes, data region sparse."""
    page = 8 << 20
    meta_dtype = np.dtype([("", FIELD_METADATA[RGB_FIELD]), ("", FIELD_METADATA[INT_FIELD])], align=True)
    table_end = HEADER.itemsize + 2 * FIELD_DESC.itemsize
    data_start = table_end + n * meta_dtype.itemsize
    sizes = np.full(n, mean_bytes, dtype=np.uint64)
    ptrs = data_start + np.arange(n, dtype=np.uint64) * mean_bytes
    alloc_ptr = int(ptrs[-1] + sizes[-1])
    alloc_ptr += -alloc_ptr % page
    header = np.zeros(1, HEADER)
    header[0] = (FORMAT_VERSION, 2, page, n, alloc_ptr)
    fields = np.zeros(2, FIELD_DESC)
    for i, (name, type_id) in enumerate((("image", RGB_FIELD), ("label", INT_FIELD))):
        fields[i]["type_id"] = type_id
        fields[i]["name"][: len(name)] = np.frombuffer(name.encode(), np.uint8)
    meta = np.zeros(n, meta_dtype)
    meta["f0"]["mode"], meta["f0"]["width"], meta["f0"]["height"] = 1, 500, 375
    meta["f0"]["data_ptr"], meta["f1"] = ptrs, np.arange(n) % CLASSES
    alloc = np.zeros(n, ALLOC_ENTRY)
    alloc["sample_id"], alloc["ptr"], alloc["size"] = np.arange(n), ptrs, sizes
    with open(path, "wb") as f:
        for part in (header, fields, meta):
            f.write(part.tobytes())
        f.seek(alloc_ptr)
        f.write(alloc.tobytes())
    m = _manifest(n, Integrity(size_bytes=os.path.getsize(path), num_samples=n, sha256="0" * 64))
    manifest_path(path).write_text(m.to_json())
    return m


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def time_check(path: Path, repeats: int, cold: bool) -> float:
    times = []
    for _ in range(repeats):
        if cold:
            evict(path)
        start = time.perf_counter()
        check_beton(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure_check_cost(work_dir: str | Path, gib: float, repeats: int, workers: int, echo=print) -> None:
    """Time check_beton and sha256 on a real GIB-sized beton written in WORK_DIR (page cache warm
    and evicted), then check_beton on a sparse file of ImageNet's layout; both files removed."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    machine = f"{os.cpu_count()} cores, {cpu_name()}, no GPU used"
    real, sparse = work / "bench_1gib.beton", work / "bench_imagenet_layout.beton"
    try:
        start = time.perf_counter()
        m = write_real(real, gib, workers)
        echo(
            f"# wrote {real}: {m.integrity.size_bytes:,} bytes, {m.num_images:,} samples in "
            f"{time.perf_counter() - start:.0f} s; machine {machine}"
        )
        size = m.integrity.size_bytes
        echo(
            f"check_beton, {size / 2**30:.2f} GiB, {m.num_images:,} samples, warm page cache: median of "
            f"{repeats} {time_check(real, repeats, cold=False):.2f} ms"
        )
        echo(
            f"check_beton, same file evicted from the page cache before each run: median of {repeats} "
            f"{time_check(real, repeats, cold=True):.2f} ms"
        )
        echo(
            f"sha256 at write time (file just written, in the page cache): {m.notes['sha256_seconds']:.2f} s "
            f"= {size / m.notes['sha256_seconds'] / 1e6:.0f} MB/s"
        )
        evict(real)
        start = time.perf_counter()
        sha256_of(real)
        seconds = time.perf_counter() - start
        echo(f"sha256 of the evicted file (--verify, disk read): {seconds:.2f} s = {size / seconds / 1e6:.0f} MB/s")
        real.unlink()
        manifest_path(real).unlink()
        m = write_sparse_imagenet_layout(sparse)
        echo(
            f"check_beton, ImageNet-sized layout ({m.num_images:,} samples, sparse {m.integrity.size_bytes / 1e9:.0f} "
            f"GB), warm: median of {repeats} {time_check(sparse, repeats, cold=False):.1f} ms; cold: "
            f"{time_check(sparse, repeats, cold=True):.1f} ms"
        )
    finally:
        for p in (real, sparse):
            p.unlink(missing_ok=True)
            manifest_path(p).unlink(missing_ok=True)
