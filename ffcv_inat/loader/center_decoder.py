"""The evaluation (and un-augmented training) decoder: the centre crop of `crops.center_box`,
which is ffcv's CenterCropRGBImageDecoder's box, decoded as `batch_decode.CropDecoder` decodes
(a batch's images handed to threads one at a time, one decode buffer per thread), so its
batches are ffcv's stock decoder's pixel for pixel at a fraction of its memory.
"""

from __future__ import annotations

from typing import Callable

from .batch_decode import CropDecoder
from .crops import center_box


class CenterCropDecoder(CropDecoder):
    """The centred square of side int(ratio * min(height, width)), resized to `output_size`; no flip."""

    def __init__(self, output_size: tuple[int, int], ratio: float):
        super().__init__(output_size)
        self.ratio = float(ratio)

    def box_code(self) -> Callable:
        ratio = self.ratio

        def box(index, height, width):
            top, left, h, w = center_box(height, width, ratio)
            return top, left, h, w, False

        return box
