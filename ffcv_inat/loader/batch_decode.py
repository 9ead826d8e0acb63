"""How the CPU path decodes a batch: its images handed to threads one at a time, each thread with
one decode buffer.

ffcv's stock decoders loop `prange` over a batch's images, and numba's scheduler cuts that range
into one contiguous share per thread before the loop starts (its default schedule; seen with the
tbb layer: a probe in tests/test_batch_decode.py), so at every batch's end all threads wait for
the one whose share held the largest images. They also decode into one full-size buffer per image of the batch, per
batch slot: 256 x 512 x 512 x 3 bytes (~200 MB) a slot, batches_ahead + 2 slots, allocated
afresh every epoch, though a thread decodes one image at a time.

`CropDecoder` (the base of the seeded training decoder and the centre-crop decoder) does it
differently, in the same ffcv op shape:

- one task per thread (`prange` over tasks), each taking the next image of the batch from a
  shared counter (`fetch_add`, an atomic add) until none are left: a batch's work is split
  dynamically, whatever the threading layer;
- each task decodes into its own row of a `DecodeScratch` (tasks x largest image), owned by the
  decoder and made once per loader: the pipeline asks ffcv only for the output batch.

Which thread decodes an image changes nothing in its pixels (the box is a function of the
sample, never of the thread), so batches stay bit-identical to the per-image design's.

The compiled code reaches the scratch and the counter through their addresses (integers, which
numba may freeze as constants: an array it would freeze by value; `pointers`), as the epoch
cell of the seeded decoder is read.
"""

from __future__ import annotations

from typing import Callable

import numba
import numpy as np
from ffcv.fields.rgb_image import IMAGE_MODES, ResizedCropRGBImageDecoder
from ffcv.libffcv import imdecode, resize_crop
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.state import State

from .pointers import fetch_add, store_int64, uint8_pointer


class DecodeScratch:
    """`tasks` decode buffers of `size` bytes and the batch's work counter, for one decoder.
    Pages of a buffer are only touched (resident) once a task decodes into them."""

    def __init__(self, tasks: int, size: int):
        self.tasks, self.size = max(1, int(tasks)), max(1, int(size))
        self.buffers = np.empty((self.tasks, self.size), dtype=np.uint8)
        self.counter = np.zeros(1, dtype=np.int64)

    @property
    def buffers_address(self) -> int:
        return self.buffers.ctypes.data

    @property
    def counter_address(self) -> int:
        return self.counter.ctypes.data


class CropDecoder(ResizedCropRGBImageDecoder):
    """Decoder for ffcv's RGBImageField: each image decoded (JPEG) or read (raw), the box of
    `box_code()` cut from it and resized (ffcv's `resize_crop`, OpenCV INTER_AREA) to
    `output_size`, mirrored where the box says so; the batch split between threads as the
    module says. Subclasses give `box_code()`: a Python function (index, height, width) ->
    (top, left, crop_height, crop_width, flip), compiled into the pipeline.

    It subclasses ffcv's decoder base class because ffcv recognises the first op of an image
    pipeline as its decoder by that type.
    """

    # The base class's hook for ffcv's own crop functions; box_code draws the boxes here.
    get_crop_generator = None

    def box_code(self) -> Callable:
        raise NotImplementedError

    def _scratch_for(self, tasks: int, size: int) -> DecodeScratch:
        """The decoder's scratch, made on the first compilation: one buffer per thread ffcv runs
        this loader's pipeline on (Compiler.num_threads, set by the Loader before it compiles;
        the code never runs more tasks than there are buffers). ffcv calls generate_code more
        than once per loader, and compiled code holds the scratch's address, so a scratch is
        never freed before the decoder: a larger one is kept beside the first."""
        current = self.__dict__.get("_scratches", [])
        if not current or current[-1].tasks < tasks or current[-1].size < size:
            self._scratches = current + [DecodeScratch(tasks, size)]
        return self._scratches[-1]

    @property
    def scratch(self) -> DecodeScratch | None:
        """The scratch the decoder's latest compiled code decodes into (None before compiling)."""
        scratches = self.__dict__.get("_scratches")
        return scratches[-1] if scratches else None

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery]:
        """The output batch only: the decode buffers are the decoder's own (`DecodeScratch`)."""
        state, (output, _per_image_buffers) = super().declare_state_and_memory(previous_state)
        return state, output

    def generate_code(self) -> Callable:
        jpg = IMAGE_MODES["jpg"]
        mem_read = self.memory_read
        my_range = Compiler.get_iterator()
        imdecode_c = Compiler.compile(imdecode)
        resize_crop_c = Compiler.compile(resize_crop)
        box = Compiler.compile(self.box_code())
        scratch = self._scratch_for(Compiler.num_threads, int(self.max_height) * int(self.max_width) * 3)
        rows, size = scratch.tasks, scratch.size
        buffers_address, counter = scratch.buffers_address, scratch.counter_address

        def decode(batch_indices, destination, metadata, storage_state):
            n = len(batch_indices)
            buffers = numba.carray(uint8_pointer(buffers_address), (rows, size))
            store_int64(counter, 0)
            tasks = max(1, min(n, rows, numba.get_num_threads()))
            for task in my_range(tasks):
                buffer = buffers[task]  # this task's own
                dst_ix = fetch_add(counter, 1)
                while dst_ix < n:
                    source_ix = batch_indices[dst_ix]
                    field = metadata[source_ix]
                    image_data = mem_read(field["data_ptr"], storage_state)
                    height = np.uint32(field["height"])
                    width = np.uint32(field["width"])
                    if field["mode"] == jpg:
                        imdecode_c(image_data, buffer, height, width, height, width, 0, 0, 1, 1, False, False)
                        image = buffer[: 3 * height * width].reshape(height, width, 3)
                    else:
                        image = image_data.reshape(height, width, 3)
                    top, left, h, w, flip = box(source_ix, height, width)
                    resize_crop_c(image, top, top + h, left, left + w, destination[dst_ix])
                    if flip:
                        mirror_in_place(destination[dst_ix])
                    dst_ix = fetch_add(counter, 1)
            return destination[:n]

        decode.is_parallel = True
        return decode


@numba.njit(nogil=True)
def mirror_in_place(image):
    """Reverse the columns of an H x W x C image."""
    height, width, channels = image.shape
    for y in range(height):
        for x in range(width // 2):
            for c in range(channels):
                a = image[y, x, c]
                image[y, x, c] = image[y, width - 1 - x, c]
                image[y, width - 1 - x, c] = a
