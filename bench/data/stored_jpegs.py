"""A beton's stored bytes as the GPU data path's ffcv op hands them over, for the checks and
ceilings that work on exactly those bytes (bench/checks/decode.py, bench/throughput/ceiling.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np


def stored_batches(
    beton: Path, samples: int, batch: int, workers: int, seed: int, manifest=None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, headers) of the first `samples` samples in order, `batch` at a time, as the GPU
    path's ffcv op writes them (training crops and flips of `seed`, epoch 0). Rows are copies:
    ffcv reuses its buffers. (make_loader does not take a subset of indices, hence this Loader.)
    A view's (`manifest`: checked, read when None) are its first samples in its parent."""
    from ffcv.loader import Loader, OrderOption

    from ffcv_inat.beton import beton_file, check_beton, sample_indices
    from ffcv_inat.loader import CompressedImageBytes, keep_alive, largest_payload, read_headers

    manifest = manifest or check_beton(beton)
    file, indices = beton_file(beton, manifest), sample_indices(manifest)
    op = CompressedImageBytes(largest_payload(file), random_crop=True, seed=seed)
    loader = Loader(
        str(file),
        batch_size=batch,
        num_workers=workers,
        order=OrderOption.SEQUENTIAL,
        indices=(np.arange(samples) if indices is None else indices[:samples]).astype(np.uint64),
        drop_last=False,
        pipelines={"image": [op], "label": None},
    )
    keep_alive(loader)
    for (rows,) in loader:
        rows = np.array(rows, copy=True)
        yield rows, read_headers(rows)


@dataclass(frozen=True)
class StoredJpegs:
    """A beton's JPEG samples: their bytes, image sizes and training crop boxes and flips (the
    seeded decoder's, epoch 0). Samples stored as raw pixels are left out and counted."""

    datas: list  # np.uint8 arrays, one JPEG file each
    sizes: np.ndarray  # int64 (n, 2): height, width
    boxes: np.ndarray  # int64 (n, 5): top, left, crop height, crop width, flip
    raw_skipped: int

    def __len__(self) -> int:
        return len(self.datas)

    @property
    def mean_bytes(self) -> float:
        return float(np.mean([d.size for d in self.datas])) if self.datas else 0.0


def read_stored_jpegs(
    beton: str | Path, samples: int, workers: int, seed: int = 0, batch: int = 256, manifest=None
) -> StoredJpegs:
    """The first `samples` samples of `beton` (all if it has fewer) that are JPEGs. `manifest`:
    the beton's, already checked by the caller (checked here when None)."""
    from ffcv_inat.beton import check_beton
    from ffcv_inat.loader import HEADER_FIELDS, RAW, payload

    beton = Path(beton)
    manifest = manifest or check_beton(beton)
    n = min(samples, manifest.num_images)
    col = {name: i for i, name in enumerate(HEADER_FIELDS)}
    datas, sizes, boxes, raw = [], [], [], 0
    for rows, headers in stored_batches(beton, n, min(batch, n), workers, seed, manifest):
        for i, h in enumerate(headers):
            if int(h[col["kind"]]) == RAW:
                raw += 1
                continue
            datas.append(np.array(payload(rows, headers, i), copy=True))
            sizes.append((h[col["height"]], h[col["width"]]))
            boxes.append([h[col[k]] for k in ("top", "left", "crop_height", "crop_width", "flip")])
    return StoredJpegs(
        datas, np.array(sizes, dtype=np.int64).reshape(-1, 2), np.array(boxes, dtype=np.int64).reshape(-1, 5), raw
    )
