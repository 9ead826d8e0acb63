"""How big a beton will be, estimated from a sample of its images before the long write.

Each sampled image is decoded, resized and encoded exactly as ffcv's RGBImageField stores it
(ffcv's own `resizer` and `encode_jpeg`); the mean stored size, laid out in ffcv's pages
with its tables, is the estimate.
"""

from __future__ import annotations

import math
from pathlib import Path

from dataclasses import dataclass
from typing import Sequence

from ffcv_inat.atomic import format_size

from .images import BadImage, decode_rgb
from .jpeg_passthrough import file_passes_through, pass_through_on

SAMPLE_IMAGES = 32  # decodes ~0.1-0.5 s of images; the mean of 32 sizes is within a few % for ImageNet


@dataclass(frozen=True)
class SizeEstimate:
    num_bytes: int
    num_images: int
    per_image: float  # mean stored bytes of the sampled images
    sampled: int

    def describe(self) -> str:
        return (
            f"{self.num_images:,} images at ≈ {format_size(self.per_image)} each (a sample of "
            f"{self.sampled}), plus ffcv's tables and pages"
        )


def sample_paths(paths: Sequence[str], n: int = SAMPLE_IMAGES) -> list[str]:
    """Up to `n` paths spread evenly over `paths` (classes are contiguous: every class region
    is visited), the same on every call."""
    if len(paths) <= n:
        return list(paths)
    step = len(paths) / n
    return [paths[int(i * step)] for i in range(n)]


def stored_bytes(image, write_mode: str, max_res: int, jpeg_quality: int, compress_prob: float) -> float:
    """Expected bytes ffcv stores for one HxWx3 uint8 image: raw pixels, a JPEG, or (write mode
    proportion) the mix of both that compress_prob gives on average."""
    from ffcv.fields.rgb_image import encode_jpeg, resizer

    image = resizer(image, max_res)
    raw = float(image.nbytes)
    if write_mode == "raw":
        return raw
    jpeg = float(encode_jpeg(image, jpeg_quality).nbytes)
    if write_mode == "jpg":
        return jpeg
    return compress_prob * jpeg + (1 - compress_prob) * raw


def estimate_beton_bytes(paths: Sequence[str], opts, fields: dict, page_size: int) -> SizeEstimate:
    """The beton's size for `paths` written with WriteOptions `opts` and ffcv `fields`.
    Undecodable sampled files are left out of the mean (the writer skips them too)."""
    from ffcv.types import ALLOC_TABLE_TYPE, get_metadata_type

    through = pass_through_on(opts)
    sizes = []
    for path in sample_paths(paths):
        try:
            if through and file_passes_through(path, opts.max_res):  # stored as it is: its own size
                sizes.append(float(Path(path).stat().st_size))
                continue
            image = decode_rgb(path, min_side=opts.max_res)
        except (BadImage, OSError):
            continue
        sizes.append(stored_bytes(image, opts.write_mode, opts.max_res, opts.jpeg_quality, opts.compress_prob))
    per_image = sum(sizes) / len(sizes) if sizes else 0.0
    n = len(paths)
    # ffcv's layout: header, field descriptions and per-sample metadata padded to a whole page;
    # then whole pages of samples (a sample never straddles two; each worker fills its own
    # pages, so each busy worker leaves one partly empty); then the allocation table.
    tables = _round_up(4096 + n * get_metadata_type(list(fields.values())).itemsize, page_size)
    per_page = max(1, int(page_size // per_image)) if per_image else max(1, n)
    busy_workers = min(opts.num_workers(), math.ceil(n / opts.chunksize))
    pages = math.ceil(n / per_page) + busy_workers - 1
    num_bytes = tables + pages * page_size + n * ALLOC_TABLE_TYPE.itemsize
    return SizeEstimate(num_bytes, n, per_image, len(sizes))


def _round_up(num_bytes: int, multiple: int) -> int:
    return -(-num_bytes // multiple) * multiple
