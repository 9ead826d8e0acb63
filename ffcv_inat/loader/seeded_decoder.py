"""An ffcv decoder whose RandomResizedCrop and flip are a pure function of (seed, epoch, image).

`SeededRandomResizedCropDecoder` decodes as ffcv's `RandomResizedCropRGBImageDecoder` does
(ffcv's `imdecode` for JPEG samples, the stored pixels for raw ones, then ffcv's `resize_crop`,
OpenCV's INTER_AREA resize of the box, into the output batch), but takes each sample's box and flip from
`crops.crop_box(seed, epoch, sample index, height, width)` instead of numba's
unseeded per-thread generator, and mirrors the flipped ones in place, so no separate
RandomHorizontalFlip op (and no extra copy of the batch) follows it. A batch is therefore the
same with any number of workers, in any process, on resume.

The epoch: ffcv compiles a Loader's pipeline once, and numba freezes the globals and closure
variables it reads, numpy arrays included, as constants. So the epoch lives in an `EpochCell`,
a one-element array owned by the decoder; the compiled code holds only its address and reads it
through a pointer (`load_int64`) at the start of every batch. `set_epoch` writes it; call it
before the epoch's iterator is created (ffcv's loading thread starts at once) and never while an
epoch is in flight. `beton_loader.BetonLoader` does this for you, from the epoch of its
shuffle order. The GPU path's bytes op (`gpu.jpeg_bytes`) reads its epoch the same way.
"""
from __future__ import annotations

from typing import Callable

import numba
import numpy as np
from ffcv.fields.rgb_image import IMAGE_MODES, ResizedCropRGBImageDecoder
from ffcv.libffcv import imdecode, resize_crop
from ffcv.pipeline.compiler import Compiler
from numba import types
from numba.extending import intrinsic

from .crops import crop_box


@intrinsic
def load_int64(typingctx, address):
    """The int64 stored at `address` (an integer), read when the compiled code runs."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.int64)))
        return builder.load(ptr)

    return types.int64(address), codegen


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


@numba.njit(nogil=True)
def _mirror_in_place(image):
    """Reverse the columns of an H x W x C image."""
    height, width, channels = image.shape
    for y in range(height):
        for x in range(width // 2):
            for c in range(channels):
                a = image[y, x, c]
                image[y, x, c] = image[y, width - 1 - x, c]
                image[y, width - 1 - x, c] = a


class SeededRandomResizedCropDecoder(EpochFromCell, ResizedCropRGBImageDecoder):
    """Decoder for ffcv's RGBImageField: RandomResizedCrop (scale (0.08, 1), ratio (3/4, 4/3))
    to `output_size` (height, width) and a horizontal flip with probability 1/2, both drawn by
    `crop_box(seed, epoch, sample index, ...)`. JPEG and raw samples, any number of workers.

    It subclasses ffcv's decoder base class because ffcv recognises the first op of an image
    pipeline as its decoder by that type; the memory it asks for (the output batch and one
    decode buffer per image) is the stock decoder's.
    """

    # The base class's hook for ffcv's own crop functions; this decoder draws with crop_box.
    get_crop_generator = None

    def __init__(self, output_size: tuple[int, int], seed: int = 0, epoch: int = 0):
        super().__init__(output_size)
        self.seed = int(seed)
        self.epoch_cell = EpochCell(epoch)  # read by the compiled code through its address

    def generate_code(self) -> Callable:
        jpg = IMAGE_MODES["jpg"]
        mem_read = self.memory_read
        my_range = Compiler.get_iterator()
        imdecode_c = Compiler.compile(imdecode)
        resize_crop_c = Compiler.compile(resize_crop)
        seed = self.seed
        epoch_address = self.epoch_cell.address  # an integer: numba freezes it, not the array

        def decode(batch_indices, my_storage, metadata, storage_state):
            destination, temp_storage = my_storage
            epoch = load_int64(epoch_address)
            for dst_ix in my_range(len(batch_indices)):
                source_ix = batch_indices[dst_ix]
                field = metadata[source_ix]
                image_data = mem_read(field["data_ptr"], storage_state)
                height = np.uint32(field["height"])
                width = np.uint32(field["width"])
                if field["mode"] == jpg:
                    temp_buffer = temp_storage[dst_ix]
                    imdecode_c(image_data, temp_buffer, height, width, height, width, 0, 0, 1, 1, False, False)
                    temp_buffer = temp_buffer.reshape(-1)[:3 * height * width].reshape(height, width, 3)
                else:
                    temp_buffer = image_data.reshape(height, width, 3)
                top, left, h, w, flip = crop_box(seed, epoch, source_ix, height, width)
                resize_crop_c(temp_buffer, top, top + h, left, left + w, destination[dst_ix])
                if flip:
                    _mirror_in_place(destination[dst_ix])
            return destination[:len(batch_indices)]

        decode.is_parallel = True
        return decode
