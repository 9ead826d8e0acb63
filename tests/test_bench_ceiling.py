"""This machine's ceiling (bench/ceiling.py) on a beton's own stored JPEGs, with the real ffcv
reader, libffcv and torchvision; rates are never asserted, only what was timed and how."""
import numpy as np
import pytest
import torch
from PIL import Image

from ffcv_inat.bench.ceiling import (_decode_chunk, cpu_ceiling, device_decode_rate, finish_ceiling, open_ceiling,
                                    timed_rounds)
from ffcv_inat.bench.loader_bench import list_image_folder, write_source_beton
from ffcv_inat.bench.stored_jpegs import read_stored_jpegs
from ffcv_inat.crops import crop_box


@pytest.fixture(scope="module")
def beton(tmp_path_factory):
    """6 JPEGs of different sizes in 2 classes, and their beton."""
    root = tmp_path_factory.mktemp("ceiling")
    for i in range(6):
        d = root / "photos" / f"class{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(i).integers(0, 255, (30 + 4 * i, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(d / f"{i}.jpg", quality=90)
    path = root / "b.beton"
    write_source_beton(list_image_folder(root / "photos"), path, workers=1)
    return path


@pytest.mark.timeout(120)
def test_the_ceiling_times_the_betons_own_jpegs_with_the_seeded_boxes(beton):
    jpegs = read_stored_jpegs(beton, 100, workers=1)
    assert len(jpegs) == 6 and jpegs.raw_skipped == 0
    # in the beton's order, ImageFolder's: class0/0, 2, 4, then class1/1, 3, 5
    assert jpegs.sizes[:, 0].tolist() == [30, 38, 46, 34, 42, 50] and set(jpegs.sizes[:, 1]) == {40}
    assert all(bytes(d[:2]) == b"\xff\xd8" for d in jpegs.datas)  # JPEG files, as stored
    # the boxes and flips the seeded decoder cuts in epoch 0 (seed 0) of each sample
    for i, (h, w) in enumerate(jpegs.sizes.tolist()):
        assert jpegs.boxes[i].tolist() == [int(v) for v in crop_box(0, 0, i, h, w)]
    _decode_chunk(jpegs, range(len(jpegs)), 16)  # every box lies inside its image: no error from libffcv
    c = cpu_ceiling(jpegs, workers=2, resolutions=[16, 24], rounds=2, min_seconds=0)
    assert (c.workers, c.images) == (2, 6) and set(c.decode_resize) == {16, 24}
    assert c.decode.n == 4 and all(s.n == 2 for s in c.decode_resize.values())  # decode alone beside each
    assert all(s.min <= s.median <= s.max for s in (c.decode, *c.decode_resize.values()))
    # the GPU path's counterpart, here with torchvision on the CPU in the device's place
    assert device_decode_rate(jpegs, "cpu", batch=4, rounds=1, min_seconds=0).n == 1
    with open_ceiling(beton, 1, min_seconds=0, echo=lambda m: None) as rounds:
        rounds.round(16)
        c = finish_ceiling(rounds, gpu_device=torch.device("cpu"))
    assert c.images == 6 and c.decode.n == 1 and set(c.decode_resize) == {16}
    assert c.device_decode is None  # no CUDA: no device figure


def test_timed_rounds_go_over_the_images_until_the_round_is_long_enough():
    passes = []

    def one_pass():
        passes.append(1)
        return 10

    s = timed_rounds(one_pass, rounds=2, min_seconds=0)
    assert len(passes) == 3 and s.n == 2  # one uncounted pass, then one pass per round
