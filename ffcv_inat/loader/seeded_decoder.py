"""An ffcv decoder whose RandomResizedCrop and flip are a pure function of (seed, epoch, image).

`SeededRandomResizedCropDecoder` decodes as ffcv's `RandomResizedCropRGBImageDecoder` does
(ffcv's `imdecode` for JPEG samples, the stored pixels for raw ones, then ffcv's `resize_crop`,
OpenCV's INTER_AREA resize of the box, into the output batch; a batch split between threads as
`batch_decode` says), but takes each sample's box and flip from
`crops.crop_box(seed, epoch, sample index, height, width)` instead of numba's
unseeded per-thread generator, and mirrors the flipped ones in place, so no separate
RandomHorizontalFlip op (and no extra copy of the batch) follows it. A batch is therefore the
same with any number of workers, in any process, on resume.

The epoch: ffcv compiles a Loader's pipeline once, and numba freezes the globals and closure
variables it reads, numpy arrays included, as constants. So the epoch lives in an `EpochCell`,
a one-element array owned by the decoder; the compiled code holds only its address and reads it
through a pointer (`pointers.load_int64`) for every image. `set_epoch` writes it; call it
before the epoch's iterator is created (ffcv's loading thread starts at once) and never while an
epoch is in flight. `beton_loader.BetonLoader` does this for you, from the epoch of its
shuffle order. The GPU path's bytes op (`gpu.jpeg_bytes`) reads its epoch the same way.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .batch_decode import CropDecoder
from .crops import crop_box
from .pointers import load_int64


class EpochCell:
    """The epoch as compiled ffcv code sees it: a persistent one-element int64 array whose
    address (`address`, an integer numba may freeze) the code reads with `load_int64`."""

    def __init__(self, epoch: int = 0):
        self._value = np.zeros(1, dtype=np.int64)
        self.set(epoch)

    @property
    def address(self) -> int:
        return self._value.ctypes.data

    @property
    def value(self) -> int:
        return int(self._value[0])

    def set(self, epoch: int) -> None:
        self._value[0] = int(epoch)


class EpochFromCell:
    """`epoch` and `set_epoch` of an ffcv op whose compiled code reads its `epoch_cell`."""

    epoch_cell: EpochCell

    @property
    def epoch(self) -> int:
        return self.epoch_cell.value

    def set_epoch(self, epoch: int) -> None:
        self.epoch_cell.set(epoch)


class SeededRandomResizedCropDecoder(EpochFromCell, CropDecoder):
    """Decoder for ffcv's RGBImageField: RandomResizedCrop (scale (0.08, 1), ratio (3/4, 4/3))
    to `output_size` (height, width) and a horizontal flip with probability 1/2, both drawn by
    `crop_box(seed, epoch, sample index, ...)`. JPEG and raw samples, any number of workers;
    the batch is decoded as `batch_decode.CropDecoder` does (dynamic split, a buffer per thread).
    """

    def __init__(self, output_size: tuple[int, int], seed: int = 0, epoch: int = 0):
        super().__init__(output_size)
        self.seed = int(seed)
        self.epoch_cell = EpochCell(epoch)  # read by the compiled code through its address

    def box_code(self) -> Callable:
        seed = self.seed
        epoch_address = self.epoch_cell.address  # an integer: numba freezes it, not the array

        def box(index, height, width):
            # The epoch is only written between epochs, so every image of a batch reads the same.
            return crop_box(seed, load_int64(epoch_address), index, height, width)

        return box
