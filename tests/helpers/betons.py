"""Small betons of gradient images in odd sizes, about half stored as JPEG and half raw: every
crop and flip shows in their pixels (the seeded decoder's, the batch decoders' and the GPU
path's tests)."""

import hashlib

import numpy as np
import torch
from PIL import Image

from ffcv_inat.loader import make_loader
from ffcv_inat.writers.beton import BetonContents, ClassInfo, WriteOptions, write_beton

# The seeded loader's seed and batch in the tests that read these betons.
SEED = 7
BATCH = 8
# (height, width) of the images: landscape, portrait, square, and two extremes whose crops
# fall back to the centre crop most of the time.
SIZES = [(48, 64), (64, 48), (56, 56), (40, 96), (90, 36), (12, 100), (100, 12), (33, 47)]


def gradient_image(i: int, height: int, width: int) -> np.ndarray:
    """Smooth colour gradients plus noise: every crop and flip shows in the pixels."""
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([255 * x / width, 255 * y / height, 127 + 100 * np.sin((x + 2 * y) / 5)], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def write_gradient_beton(out, count: int, split: str, opts: WriteOptions):
    """`count` gradient images of SIZES (in turn) in 2 classes, as PNGs beside `out`, and their beton."""
    samples = []
    for i in range(count):
        h, w = SIZES[i % len(SIZES)]
        path = out.parent / "images" / f"c{i % 2}" / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(gradient_image(i, h, w)).save(path)
        samples.append((str(path), i % 2))
    write_beton(
        out,
        samples,
        [ClassInfo("c0", "c0", None), ClassInfo("c1", "c1", None)],
        BetonContents("imagefolder", split),
        opts,
    )
    return out


def write_mixed_beton(root):
    """32 images in 2 classes, about half stored as JPEG and half raw (write mode 'proportion')."""
    return write_gradient_beton(
        root / "mixed.beton", 32, "train", WriteOptions(write_mode="proportion", compress_prob=0.5, workers=1)
    )


def epoch_digest(loader, epoch: int) -> str:
    h = hashlib.sha256()
    loader.set_epoch(epoch)
    for images, labels in loader:
        h.update(images.contiguous().numpy().tobytes())
        h.update(labels.numpy().tobytes())
    return h.hexdigest()


def seeded_loader(beton, workers):
    return make_loader(
        beton, batch_size=BATCH, res=32, train=True, device=torch.device("cpu"), workers=workers, seed=SEED
    )


def stored_image_bytes(beton) -> list[bytes]:
    """Every sample's stored image bytes, in sample order, read from ffcv's tables."""
    from ffcv.reader import Reader

    reader = Reader(str(beton))
    size_of = dict(zip(reader.alloc_table["ptr"].tolist(), reader.alloc_table["size"].tolist()))
    data = np.fromfile(beton, dtype=np.uint8)
    return [data[p : p + size_of[p]].tobytes() for p in reader.metadata["f0"]["data_ptr"].tolist()]
