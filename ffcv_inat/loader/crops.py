"""Training crops and flips as a pure function of (seed, epoch, sample index, height, width).

`crop_box(seed, epoch, index, height, width) -> (top, left, crop_height, crop_width, flip)`
draws a RandomResizedCrop box and a horizontal flip with the distribution of torchvision's
`RandomResizedCrop.get_params` + `RandomHorizontalFlip`:

- up to 10 tries of: area fraction uniform in SCALE = (0.08, 1), aspect ratio (w / h)
  log-uniform in RATIO = (3/4, 4/3), w = round(sqrt(area * ratio)), h = round(sqrt(area / ratio));
  the first box that fits the image is placed uniformly at random (top in 0..H-h, left in 0..W-w);
- if none fits: the centre crop with the image's aspect ratio clamped to RATIO;
- flip with probability 1/2 (applied after the resize, as torchvision's flip follows its crop).

Its random numbers come from a counter-based generator, not a stream: the four integers are
hashed into a key with splitmix64's mixing function, and draw number c of a sample is
mix(key + (c + 1) * golden gamma), the c-th output of a splitmix64 generator seeded with that
key. There is no state and nothing depends on which thread, worker or process asks, so every
path that makes a training crop (ffcv's CPU workers via `seeded_decoder`, the GPU path's
bytes op `gpu.jpeg_bytes`, the tests) crops the same box for the same arguments. Draws 0-19 are the tries' (area, ratio)
pairs, 20 and 21 the position, 22 the flip.

`center_box(height, width, ratio)` is the evaluation (and un-augmented training) crop.

One implementation, compiled by numba: callable from numba code (the decoder's parallel loop)
and from Python on scalars.
"""

from __future__ import annotations

import math

import numba
import numpy as np

SCALE = (0.08, 1.0)  # area of the crop / area of the image
RATIO = (3.0 / 4.0, 4.0 / 3.0)  # crop width / crop height
TRIES = 10

_LOG_RATIO = (math.log(RATIO[0]), math.log(RATIO[1]))
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment, 2**64 / golden ratio
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_DRAW_TOP, _DRAW_LEFT, _DRAW_FLIP = 2 * TRIES, 2 * TRIES + 1, 2 * TRIES + 2

# No fastmath: the same float operations in the same order wherever the function is called.
_jit = numba.njit(nogil=True, fastmath=False, error_model="numpy")


@_jit
def _mix(z):
    """splitmix64's finaliser: a bijection of uint64 that scrambles every bit into every other."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@_jit
def sample_key(seed, epoch, index):
    """The generator's key of one sample in one epoch of one run (all three are integers;
    negative ones wrap modulo 2**64)."""
    k = _mix(np.uint64(seed) ^ _GOLDEN)
    k = _mix((k + _GOLDEN) ^ np.uint64(epoch))
    return _mix((k + _GOLDEN) ^ np.uint64(index))


@_jit
def _bits(key, draw):
    return _mix(key + np.uint64(draw + 1) * _GOLDEN)


@_jit
def _uniform(key, draw):
    """Uniform in [0, 1) with 53 random bits."""
    return np.float64(_bits(key, draw) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@_jit
def _below(key, draw, n):
    """Uniform integer in 0..n-1 (1 <= n < 2**32), exactly, by a 32x32-bit multiply-high."""
    return np.int64(((_bits(key, draw) >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@_jit
def crop_box(seed, epoch, index, height, width):
    """(top, left, crop_height, crop_width, flip) of sample `index` (a height x width image)
    in `epoch` of a run with `seed`; the box lies inside the image."""
    height = np.int64(height)
    width = np.int64(width)
    key = sample_key(seed, epoch, index)
    flip = _uniform(key, _DRAW_FLIP) < 0.5
    area = np.float64(height) * np.float64(width)
    for t in range(TRIES):
        target_area = area * (SCALE[0] + (SCALE[1] - SCALE[0]) * _uniform(key, 2 * t))
        aspect = math.exp(_LOG_RATIO[0] + (_LOG_RATIO[1] - _LOG_RATIO[0]) * _uniform(key, 2 * t + 1))
        w = np.int64(round(math.sqrt(target_area * aspect)))
        h = np.int64(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = _below(key, _DRAW_TOP, height - h + 1)
            left = _below(key, _DRAW_LEFT, width - w + 1)
            return top, left, h, w, flip
    # No try fitted: the centre crop of the whole image, its aspect ratio clamped to RATIO.
    in_ratio = np.float64(width) / np.float64(height)
    if in_ratio < RATIO[0]:
        w = width
        h = np.int64(round(w / RATIO[0]))
    elif in_ratio > RATIO[1]:
        h = height
        w = np.int64(round(h * RATIO[1]))
    else:
        w = width
        h = height
    return (height - h) // 2, (width - w) // 2, h, w, flip


@_jit
def center_box(height, width, ratio):
    """(top, left, side, side) of the evaluation crop: the centred square whose side is
    int(ratio * min(height, width)), as ffcv's CenterCropRGBImageDecoder cuts it, so the CPU and
    GPU paths evaluate on the same pixels."""
    height = np.int64(height)
    width = np.int64(width)
    side = np.int64(ratio * min(height, width))
    return (height - side) // 2, (width - side) // 2, side, side
