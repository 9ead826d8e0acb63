"""The CPU half of the GPU data path: ffcv workers copy each image's stored bytes, undecoded.

`CompressedImageBytes` is an ffcv decoder for the image field (ffcv takes the first op of a
field's pipeline as its decoder by type) that decodes nothing. Per sample it writes one row of a
per-batch uint8 buffer (ffcv allocates it, pinned when CUDA is present):

    bytes 0..HEADER_BYTES-1   the header, HEADER_FIELDS as little-endian int64
    bytes HEADER_BYTES..      the sample's stored bytes exactly (a JPEG file, or for raw-mode
                              samples, `--write-mode raw|proportion`, the H x W x 3 pixels)

The header carries what the device needs to finish the image without touching ffcv again: the
byte count, the kind (RAW, JPEG_BATCHED: baseline 8-bit with 1 or 3 components, which nvJPEG
decodes in its batched call, or JPEG_OTHER: progressive, lossless, CMYK, ... which go to the CPU
decoder), the image size, the crop box and flip, and the sample index. Training boxes and flips
are `crops.crop_box(seed, epoch, index, height, width)`, the same function the CPU
decoder crops with; evaluation boxes are `crops.center_box`. `device_decode` turns a
batch of rows into images. A batch's samples are handed to the threads one at a time, as the CPU
decoders' are (`batch_decode`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numba
import numpy as np
from ffcv.fields.rgb_image import IMAGE_MODES, SimpleRGBImageDecoder
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.state import State
from ffcv.reader import Reader

from ..crops import center_box, crop_box
from ..pointers import fetch_add, load_int64, store_int64
from ..seeded_decoder import EpochCell, EpochFromCell

HEADER_FIELDS = ("nbytes", "kind", "height", "width", "top", "left", "crop_height", "crop_width", "flip", "index")
HEADER_BYTES = 8 * len(HEADER_FIELDS)
RAW, JPEG_BATCHED, JPEG_OTHER = 0, 1, 2
KIND_NAMES = {RAW: "raw", JPEG_BATCHED: "jpeg (batched)", JPEG_OTHER: "jpeg (other)"}

_SOF_BASELINE = 0xC0
# Start-of-frame markers other than baseline: extended, progressive, lossless, arithmetic coded.
_SOF_OTHER = (0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)


def jpeg_kind(data):
    """JPEG_BATCHED for a baseline JPEG with 1 or 3 components (what nvJPEG's batched and
    hardware decoders take), JPEG_OTHER for any other JPEG or unreadable markers; reads the
    markers up to the first start-of-frame, not the image data. Plain Python, compiled by the
    op's pipeline (numba) and callable as it is on a numpy array."""
    n = data.shape[0]
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return JPEG_OTHER
    i = 2
    while i + 3 < n:
        if data[i] != 0xFF:
            return JPEG_OTHER  # lost the marker chain: let the CPU decoder judge
        marker = np.int64(data[i + 1])
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker == _SOF_BASELINE:
            if i + 9 >= n:
                return JPEG_OTHER
            components = np.int64(data[i + 9])
            return JPEG_BATCHED if components == 1 or components == 3 else JPEG_OTHER
        for other in _SOF_OTHER:
            if marker == other:
                return JPEG_OTHER
        if marker == 0xDA or marker == 0xD9:  # scan or end of image before any frame header
            return JPEG_OTHER
        i += 2 + ((np.int64(data[i + 2]) << 8) | np.int64(data[i + 3]))
    return JPEG_OTHER


def _write_header(row, values):
    """values (int64, len(HEADER_FIELDS)) into row's first HEADER_BYTES, little-endian."""
    for slot in range(values.shape[0]):
        v = np.uint64(values[slot])
        for k in range(8):
            row[8 * slot + k] = np.uint8((v >> np.uint64(8 * k)) & np.uint64(0xFF))


def read_headers(rows: np.ndarray) -> np.ndarray:
    """The headers of a batch of rows: an int64 array (batch, len(HEADER_FIELDS))."""
    return np.ascontiguousarray(rows[:, :HEADER_BYTES]).view("<i8").astype(np.int64, copy=False)


def payload(rows: np.ndarray, headers: np.ndarray, i: int) -> np.ndarray:
    """Sample i's stored bytes (a view into the batch)."""
    return rows[i, HEADER_BYTES : HEADER_BYTES + int(headers[i, 0])]


def largest_payload(beton: str | Path, field: str = "image") -> int:
    """The most bytes any sample of `field` stores: the width of a row's payload."""
    reader = Reader(str(beton))
    ptrs = reader.metadata[f"f{reader.field_names.index(field)}"]["data_ptr"]
    table = reader.alloc_table
    order = np.argsort(table["ptr"])
    sizes = table["size"][order][np.searchsorted(table["ptr"][order], ptrs)]
    return int(sizes.max()) if len(sizes) else 0


class CompressedImageBytes(EpochFromCell, SimpleRGBImageDecoder):
    """ffcv decoder for RGBImageField that emits header + stored bytes per sample (see the module).

    random_crop=True: each sample's box and flip are `crop_box(seed, epoch, index, h, w)`, the
    epoch read from `epoch_cell` when a batch starts (`set_epoch`, as the seeded CPU decoder);
    random_crop=False: `center_box(h, w, ratio)`, no flip. `max_bytes` is `largest_payload`.
    """

    def __init__(self, max_bytes: int, *, random_crop: bool, seed: int = 0, ratio: float = 224 / 256, epoch: int = 0):
        super().__init__()
        self.max_bytes = int(max_bytes)
        self.random_crop = bool(random_crop)
        self.seed = int(seed)
        self.ratio = float(ratio)
        self.epoch_cell = EpochCell(epoch)
        self.counter = np.zeros(1, dtype=np.int64)  # the work counter of the batch being emitted

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery]:
        shape = (HEADER_BYTES + self.max_bytes,)
        dtype = np.dtype("<u1")
        return replace(previous_state, jit_mode=True, shape=shape, dtype=dtype), AllocationQuery(shape, dtype)

    def generate_code(self) -> Callable:
        jpg = IMAGE_MODES["jpg"]
        mem_read = self.memory_read
        my_range = Compiler.get_iterator()
        # Compiled per loader, as ffcv compiles its own helpers: a module-level numba dispatcher
        # with array arguments, called from a second loader's pipeline, fails numba's typing
        # (KeyError in nopython_signatures, numba 0.68).
        jpeg_kind_c = Compiler.compile(jpeg_kind)
        write_header_c = Compiler.compile(_write_header)
        random_crop, seed, ratio = self.random_crop, self.seed, self.ratio
        epoch_address = self.epoch_cell.address  # an integer: numba freezes it, not the array

        counter = self.counter.ctypes.data  # the batch's next sample, handed out as batch_decode does

        def emit(batch_indices, destination, metadata, storage_state):
            epoch = load_int64(epoch_address)
            n = len(batch_indices)
            store_int64(counter, 0)
            for _task in my_range(max(1, min(n, numba.get_num_threads()))):
                dst_ix = fetch_add(counter, 1)
                while dst_ix < n:
                    source_ix = batch_indices[dst_ix]
                    field = metadata[source_ix]
                    data = mem_read(field["data_ptr"], storage_state)
                    height = np.int64(field["height"])
                    width = np.int64(field["width"])
                    row = destination[dst_ix]
                    nbytes = data.shape[0]
                    row[HEADER_BYTES : HEADER_BYTES + nbytes] = data
                    kind = jpeg_kind_c(data) if field["mode"] == jpg else RAW
                    if random_crop:
                        top, left, h, w, flip = crop_box(seed, epoch, source_ix, height, width)
                    else:
                        top, left, h, w = center_box(height, width, ratio)
                        flip = False
                    write_header_c(
                        row,
                        np.array(
                            [nbytes, kind, height, width, top, left, h, w, 1 if flip else 0, source_ix], dtype=np.int64
                        ),
                    )
                    dst_ix = fetch_add(counter, 1)
            return destination[:n]

        emit.is_parallel = True
        return emit
