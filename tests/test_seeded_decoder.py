"""The seeded decoder in real ffcv Loaders: its pixels, its epoch, and byte-identical batches
whatever the worker count or process. One small beton of odd-sized JPEG and raw images
(written by the package's writer, manifest included) serves every test.
"""

import subprocess
import sys

import cv2
import numba
import numpy as np
import pytest
import torch

from ffcv_inat.loader import make_loader
from ffcv_inat.loader.crops import crop_box
from helpers.betons import BATCH, SEED, epoch_digest, seeded_loader, write_mixed_beton


@pytest.fixture(scope="module")
def beton(tmp_path_factory):
    return write_mixed_beton(tmp_path_factory.mktemp("seeded"))


def _stored_images(beton) -> tuple[list[np.ndarray], np.ndarray]:
    """Every sample's image as the decoder sees it before cropping (JPEGs decoded by ffcv's own
    imdecode), and the storage modes."""
    from ffcv.libffcv import imdecode
    from ffcv.reader import Reader

    reader = Reader(str(beton))
    meta = reader.metadata[f"f{reader.field_names.index('image')}"]
    size_at = {int(p): int(s) for p, s in zip(reader.alloc_table["ptr"], reader.alloc_table["size"])}
    images = []
    for m in meta:
        data = np.fromfile(beton, dtype=np.uint8, count=size_at[int(m["data_ptr"])], offset=int(m["data_ptr"]))
        h, w = int(m["height"]), int(m["width"])
        if m["mode"] == 0:  # jpg
            out = np.zeros((h, w, 3), dtype=np.uint8)
            imdecode(data, out, h, w, h, w, 0, 0, 1, 1, False, False)
        else:
            out = data[: h * w * 3].reshape(h, w, 3)
        images.append(out)
    return images, meta["mode"]


def _sequential_decoder_loader(beton, out_hw, workers):
    from ffcv.loader import Loader, OrderOption

    from ffcv_inat.loader.seeded_decoder import SeededRandomResizedCropDecoder

    decoder = SeededRandomResizedCropDecoder(out_hw, seed=SEED)
    loader = Loader(
        str(beton),
        batch_size=BATCH,
        num_workers=workers,
        order=OrderOption.SEQUENTIAL,
        drop_last=False,
        pipelines={"image": [decoder], "label": None},
    )
    return loader, decoder


@pytest.mark.timeout(120)
def test_pixels_equal_a_reference_crop_resize_flip(beton):
    """Output (24 x 32, not square, so rows and columns cannot be swapped) = OpenCV's area
    resize (what ffcv 1.0.2's resize_crop runs) of crop_box's box of the decoded image,
    mirrored when crop_box says flip; within 1 level. Two epochs, the second set after
    compilation: the compiled code reads the epoch."""
    images, modes = _stored_images(beton)
    assert set(modes.tolist()) == {0, 1}, "the beton must hold both JPEG and raw samples"
    loader, decoder = _sequential_decoder_loader(beton, (24, 32), workers=2)
    flips = 0
    for epoch in (0, 5):
        decoder.set_epoch(epoch)
        got = np.concatenate([b[0].copy() for b in loader])
        assert got.shape == (len(images), 24, 32, 3)
        for i, image in enumerate(images):
            top, left, h, w, flip = crop_box(SEED, epoch, i, *image.shape[:2])
            ref = cv2.resize(image[top : top + h, left : left + w], (32, 24), interpolation=cv2.INTER_AREA)
            if flip:
                ref = ref[:, ::-1]
            flips += flip
            diff = np.abs(got[i].astype(int) - ref.astype(int)).max()
            assert diff <= 1, (epoch, i, modes[i], (top, left, h, w, flip), diff)
    assert 0 < flips < 2 * len(images)


# What a second process computes: the digest of epoch 3 with 2 workers.
CHILD = """
import sys, torch
sys.path.insert(0, {tests!r})
from helpers.betons import epoch_digest, seeded_loader
print(epoch_digest(seeded_loader({beton!r}, 2), 3))
"""


@pytest.mark.timeout(180)
def test_batches_are_byte_identical_across_workers_and_processes(beton):
    from pathlib import Path

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(tests=str(Path(__file__).parent), beton=str(beton))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        one = seeded_loader(beton, workers=1)
        two = seeded_loader(beton, workers=2)
        assert epoch_digest(one, 3) == epoch_digest(two, 3)
        assert epoch_digest(two, 4) != epoch_digest(two, 3)  # another epoch: another order and other crops
        assert epoch_digest(one, 3) == epoch_digest(two, 3)  # epochs can be revisited, in any order
        out, err = child.communicate(timeout=150)
    finally:
        child.kill()
    assert child.returncode == 0, err[-2000:]
    assert out.strip().splitlines()[-1] == epoch_digest(two, 3)


@pytest.mark.timeout(60)
def test_the_stock_decoder_stays_selectable(beton):
    from ffcv.fields.rgb_image import RandomResizedCropRGBImageDecoder

    from ffcv_inat import UserError
    from ffcv_inat.loader.seeded_decoder import SeededRandomResizedCropDecoder

    stock = make_loader(beton, batch_size=BATCH, res=32, train=True, device=torch.device("cpu"), workers=1, crop="ffcv")
    assert type(stock.decoder) is RandomResizedCropRGBImageDecoder
    ours = make_loader(beton, batch_size=BATCH, res=32, train=True, device=torch.device("cpu"), workers=1)
    assert isinstance(ours.decoder, SeededRandomResizedCropDecoder) and ours.decoder.seed == 0
    with pytest.raises(UserError, match="crop must be one of seeded, ffcv"):
        make_loader(beton, batch_size=BATCH, res=32, train=True, device=torch.device("cpu"), workers=1, crop="torch")


@pytest.mark.timeout(30)
def test_the_epoch_follows_the_shuffle_order(beton):
    """BetonLoader's crop epoch is ffcv's next_epoch when an iterator is created, also when
    the loader is iterated without set_epoch (ffcv increments next_epoch itself)."""
    from ffcv_inat.loader.pointers import load_int64

    read_int64 = numba.njit(lambda address: load_int64(address))  # what the compiled decoder reads
    loader = seeded_loader(beton, workers=1)
    loader.set_epoch(6)
    assert loader.epoch == 6 and loader.decoder.epoch == 6
    for expected in (6, 7):
        with loader.start_epoch():
            assert loader.decoder.epoch == expected and read_int64(loader.decoder.epoch_cell.address) == expected
    assert loader.epoch == 8


@pytest.mark.timeout(60)
def test_distributed_shuffle_order_is_a_function_of_seed_and_epoch(tmp_path):
    """ffcv's distributed RANDOM order (torch's DistributedSampler) draws from its own
    generator seeded with seed + epoch: the same order whatever was drawn before, and whatever
    torch's global generator did in between."""
    import torch.distributed as dist
    from ffcv.traversal_order import Random

    class FakeLoader:
        indices = np.arange(50, dtype="uint64")
        seed = 3
        distributed = True

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        first = Random(FakeLoader())
        walked = [first.sample_order(e) for e in range(4)]
        torch.manual_seed(123)
        torch.rand(10)
        fresh = Random(FakeLoader())
        assert np.array_equal(fresh.sample_order(3), walked[3])  # a resumed run's first epoch
        assert np.array_equal(first.sample_order(1), walked[1])
        assert not np.array_equal(walked[0], walked[1])
    finally:
        dist.destroy_process_group()
