"""Decoding source images to RGB, and telling the undecodable ones apart before writing.

ffcv's DatasetWriter waits forever if a worker dies on a bad sample, so every file is
checked first (cheaply: JPEGs are decoded at 1/8 scale, which still reads every byte of
the compressed stream and so catches truncation) and the bad ones never reach it.
"""

from __future__ import annotations

import multiprocessing
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

# PIL warns about odd EXIF and huge images; neither matters for decoding pixels.
warnings.filterwarnings("ignore", module="PIL")
Image.MAX_IMAGE_PIXELS = None


class BadImage(Exception):
    """A file that cannot be decoded as an image; the message is the reason."""


def _open(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise BadImage("file not found")
    if path.stat().st_size == 0:
        raise BadImage("empty file (0 bytes)")
    try:
        return Image.open(path)
    except Exception as e:  # PIL raises several types for "not an image"
        raise BadImage(f"not an image ({type(e).__name__}: {e})") from None


def decode_rgb(path: str | Path, min_side: int | None = None) -> np.ndarray:
    """The image as an HxWx3 uint8 RGB array (grayscale, CMYK, palette, alpha: converted).

    With min_side, JPEG decoding may shrink the image by a power of two as long as both
    sides stay >= min_side: the writer downsizes to max_res anyway, and this is faster.
    """
    img = _open(path)
    try:
        if min_side is not None and img.format == "JPEG":
            img.draft("RGB", (min_side, min_side))
        rgb = img.convert("RGB")
    except Exception as e:
        raise BadImage(f"cannot decode ({type(e).__name__}: {e})") from None
    finally:
        img.close()
    return np.asarray(rgb, dtype=np.uint8)


def check_image(path: str) -> str | None:
    """None if the file decodes, else the reason it does not."""
    try:
        img = _open(path)
        with img:
            if img.format == "JPEG":
                img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
            if img.width < 1 or img.height < 1:
                return "image has no pixels"
    except BadImage as e:
        return str(e)
    except Exception as e:
        return f"cannot decode ({type(e).__name__}: {e})"
    return None


def find_bad_images(paths: Sequence[str], workers: int) -> dict[str, str]:
    """{path: reason} for every file in paths that cannot be decoded (checked in parallel)."""
    bad = {}
    chunks = max(1, min(256, len(paths) // (workers * 8) or 1))
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        results = pool.imap(check_image, paths, chunksize=chunks)
        for path, reason in tqdm(zip(paths, results), total=len(paths), desc="checking images", unit="img"):
            if reason is not None:
                bad[path] = reason
    return bad
