"""The crop function (`ffcv_inat.loader.crops`): torchvision's RandomResizedCrop + flip distribution,
drawn as a pure function of (seed, epoch, sample index, image size).

Deterministic: our draws are a function of their arguments and torchvision's are made after
torch.manual_seed, so each statistic below is one fixed number, not a sample of one.
"""

import numba
import numpy as np
import pytest
import torch
from torchvision.transforms import RandomHorizontalFlip, RandomResizedCrop

from ffcv_inat.loader.crops import RATIO, SCALE, crop_box, sample_key

DRAWS = 20_000
SHAPES = [(375, 500), (64, 640), (2400, 1600)]  # (height, width): ImageNet-like, very wide, large portrait


@numba.njit
def _crop_boxes(seed, epoch, indices, heights, widths, out):
    for i in range(indices.shape[0]):
        top, left, h, w, flip = crop_box(seed, epoch, indices[i], heights[i], widths[i])
        out[i, 0], out[i, 1], out[i, 2], out[i, 3], out[i, 4] = top, left, h, w, 1 if flip else 0
    return out


def crop_boxes(seed: int, epoch: int, indices, heights, widths) -> np.ndarray:
    """`crop_box` of many samples, called from numba code as ffcv's workers call it: int64 rows
    (top, left, crop_height, crop_width, flip 0/1); `heights` and `widths` may be scalars."""
    indices = np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)
    n = indices.shape[0]
    heights = np.ascontiguousarray(np.broadcast_to(np.asarray(heights, dtype=np.int64), (n,)))
    widths = np.ascontiguousarray(np.broadcast_to(np.asarray(widths, dtype=np.int64), (n,)))
    return _crop_boxes(int(seed), int(epoch), indices, heights, widths, np.empty((n, 5), dtype=np.int64))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(a), np.sort(b)
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def torchvision_boxes(height: int, width: int, n: int, seed: int) -> np.ndarray:
    torch.manual_seed(seed)
    image = torch.empty((1, height, width), dtype=torch.uint8)
    boxes = [RandomResizedCrop.get_params(image, list(SCALE), list(RATIO)) for _ in range(n)]
    flip, pixels = RandomHorizontalFlip(p=0.5), torch.tensor([[[0, 1]]])
    flips = [int(flip(pixels)[0, 0, 0]) for _ in range(n)]  # 1 where it mirrored [0, 1]
    return np.column_stack([np.array(boxes, dtype=np.int64), np.array(flips, dtype=np.int64)])


def features(boxes: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
    top, left, h, w = (boxes[:, i].astype(np.float64) for i in range(4))
    return {
        "area fraction": h * w / (height * width),
        "log aspect ratio": np.log(w / h),
        "centre x": (left + w / 2) / width,
        "centre y": (top + h / 2) / height,
    }


@pytest.mark.timeout(60)
@pytest.mark.parametrize("height, width", SHAPES)
def test_same_distribution_as_torchvision(height, width):
    ours = crop_boxes(seed=11, epoch=3, indices=np.arange(DRAWS), heights=height, widths=width)
    theirs = torchvision_boxes(height, width, DRAWS, seed=11)
    top, left, h, w, flip = ours.T
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    assert set(np.unique(flip)) == {0, 1} and abs(flip.mean() - 0.5) <= 0.01
    ours_f, theirs_f = features(ours, height, width), features(theirs, height, width)
    stats = {name: ks_statistic(ours_f[name], theirs_f[name]) for name in ours_f}
    assert max(stats.values()) < 0.025, stats


@pytest.mark.timeout(30)
def test_the_fallback_is_torchvisions_centre_crop():
    # A 3 x 100 image: no try fits (an area of at least 0.08 x 300 = 24 px at a ratio of at
    # most 4/3 is at least round(sqrt(18)) = 4 rows high), so every draw is the fallback: full
    # height, width clamped to 4/3 of it, centred; torchvision gives the same box.
    image = torch.empty((1, 3, 100), dtype=torch.uint8)
    expected = RandomResizedCrop.get_params(image, list(SCALE), list(RATIO))
    boxes = crop_boxes(0, 0, np.arange(200), 3, 100)
    assert {tuple(b[:4]) for b in boxes} == {expected} == {(0, 48, 3, 4)}
    # Tall: width kept, height = width / (3/4), centred.
    image = torch.empty((1, 100, 3), dtype=torch.uint8)
    expected = RandomResizedCrop.get_params(image, list(SCALE), list(RATIO))
    assert {tuple(b[:4]) for b in crop_boxes(0, 0, np.arange(200), 100, 3)} == {expected} == {(48, 0, 4, 3)}


@pytest.mark.timeout(30)
def test_a_pure_function_of_its_arguments():
    one = crop_box(5, 2, 123, 375, 500)
    assert isinstance(one[0], int) and isinstance(one[4], bool)
    # Python scalars and the array form agree; the index's integer type does not matter.
    rows = crop_boxes(5, 2, np.array([123, 7], dtype=np.uint64), [375, 480], [500, 640])
    assert tuple(rows[0]) == (*one[:4], int(one[4]))
    assert tuple(rows[1]) == (*crop_box(5, 2, 7, 480, 640)[:4], int(crop_box(5, 2, 7, 480, 640)[4]))
    assert crop_box(5, 2, 123, 375, 500) == one  # no state between calls
    # Every argument matters: another seed, epoch or sample gives (almost always) another box.
    idx = np.arange(1000)
    base = crop_boxes(5, 2, idx, 375, 500)
    for seed, epoch, indices in ((6, 2, idx), (5, 3, idx), (5, 2, idx + 1)):
        other = crop_boxes(seed, epoch, indices, 375, 500)
        assert (other[:, :4] != base[:, :4]).any(axis=1).mean() > 0.99
        assert 0.4 < (other[:, 4] != base[:, 4]).mean() < 0.6
    # Keys of neighbouring arguments are unrelated (no shared bits to speak of).
    keys = [sample_key(s, e, i) for s in range(3) for e in range(3) for i in range(3)]
    assert len(set(keys)) == 27
    bits = [bin(int(a) ^ int(b)).count("1") for a, b in zip(keys, keys[1:])]
    assert 20 < np.mean(bits) < 44


@pytest.mark.timeout(30)
def test_fixed_values():
    """The crops are part of what a seed means: a change here changes every run's augmentation."""
    assert crop_box(0, 0, 0, 375, 500) == (108, 312, 220, 170, False)
    assert crop_boxes(0, 0, [1, 2], 375, 500).tolist() == [[86, 126, 250, 326, 0], [116, 229, 155, 200, 1]]


def test_scale_and_ratio_bounds_are_torchvisions_defaults():
    defaults = RandomResizedCrop(size=8)  # the bounds torchvision uses when a recipe names none
    assert SCALE == tuple(defaults.scale) and RATIO == tuple(defaults.ratio)
