"""Source JPEGs stored as they come: a baseline colour JPEG that already fits --max-res goes into
the beton byte for byte, instead of being decoded and encoded again at --jpeg-quality (lossless,
and no decode or encode at all). iNat-2021's images are such JPEGs, ≤ 500 px.

`jpeg_header` reads a file's frame header (pure, over bytes); `passes_through` says whether a
file qualifies; `PassThroughEncode` is what ffcv's RGBImageField runs to store a sample: a
`StoredJPEG` as it is, any other image as ffcv stores it. It replaces the field's `encode` on
the instance, so that the beton's field stays ffcv's own RGBImageField (ffcv names a field's
type by its exact class: a subclass would be written as an unknown field no reader opens).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .images import BadImage

SOI = b"\xff\xd8"
BASELINE = 0xC0  # SOF0: baseline sequential DCT, Huffman coded: what every JPEG decoder handles
# Markers without a length field (RSTn, SOI, EOI, TEM)
_STANDALONE = {0x01, *range(0xD0, 0xDA)}
_FRAMES = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}  # SOFn (not DHT, JPG, DAC)


class JpegHeader(NamedTuple):
    frame: int  # the SOFn marker's second byte: 0xC0 baseline, 0xC2 progressive, ...
    width: int
    height: int
    components: int  # 3: colour (YCbCr), 1: grayscale, 4: CMYK


def jpeg_header(data: bytes) -> JpegHeader | None:
    """The frame header of JPEG `data`, None if it is not a JPEG or has no frame header before
    its scan (read from the markers: SOI, then length-prefixed segments up to the first SOFn)."""
    if not data.startswith(SOI):
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _FRAMES:
            if i + 10 > len(data):
                return None
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return JpegHeader(marker, width, height, data[i + 9])
        if marker == 0xDA:  # a scan before any frame header
            return None
        i += 2 + length
    return None


def passes_through(header: JpegHeader | None, max_res: int) -> bool:
    """Whether a file with this header is stored as it is: baseline, colour, ≤ max_res a side."""
    return (
        header is not None
        and header.frame == BASELINE
        and header.components == 3
        and 0 < max(header.width, header.height) <= max_res
        and min(header.width, header.height) > 0
    )


def pass_through_on(opts) -> bool:
    """Whether WriteOptions `opts` store qualifying JPEGs as they come (pass_through, write mode jpg)."""
    return opts.pass_through and opts.write_mode == "jpg"


def file_passes_through(path: str | Path, max_res: int) -> bool:
    with open(path, "rb") as f:
        head = f.read(1 << 16)  # frame headers come after the EXIF/ICC segments, all well within this
    return passes_through(jpeg_header(head), max_res)


@dataclass(frozen=True)
class StoredJPEG:
    """A sample's JPEG bytes, stored as they are, with its size from the frame header."""

    data: bytes
    width: int
    height: int

    @classmethod
    def read(cls, path: str | Path) -> "StoredJPEG":
        data = Path(path).read_bytes()
        header = jpeg_header(data)
        if header is None:  # it was a JPEG when checked: the file changed under the writer
            raise BadImage("no longer a JPEG")
        return cls(data, header.width, header.height)


class PassThroughEncode:
    """RGBImageField.encode for a field whose samples may be `StoredJPEG`s (see the module)."""

    def __init__(self, field):
        self.field = field  # a plain RGBImageField with the same options: every other image

    def __call__(self, destination, image, malloc):
        if not isinstance(image, StoredJPEG):
            return self.field.encode(destination, image, malloc)
        from ffcv.fields.rgb_image import IMAGE_MODES

        destination["mode"] = IMAGE_MODES["jpg"]
        destination["height"], destination["width"] = image.height, image.width
        destination["data_ptr"], storage = malloc(len(image.data))
        storage[:] = np.frombuffer(image.data, dtype=np.uint8)


def pass_through_field(**options):
    """ffcv's RGBImageField (write_mode jpg) that stores `StoredJPEG` samples as they are."""
    from ffcv.fields import RGBImageField

    field = RGBImageField(write_mode="jpg", **options)
    field.encode = PassThroughEncode(RGBImageField(write_mode="jpg", **options))
    return field
