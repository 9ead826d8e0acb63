"""The GPU data path (`data.decode: gpu`): ffcv's workers copy each sample's stored bytes
(`jpeg_bytes`), the device decodes, crops, resizes, flips and normalises them
(`device_decode`), a thread does it one batch ahead of the consumer (`device_loader`)."""

from .device_decode import DecodeCounts, decode_images, images_from_rows, indexed, nvjpeg_backend
from .device_loader import DecodingIterator, DeviceDecodeLoader
from .jpeg_bytes import (
    HEADER_FIELDS,
    JPEG_BATCHED,
    KIND_NAMES,
    RAW,
    CompressedImageBytes,
    largest_payload,
    payload,
    read_headers,
)

__all__ = [
    "HEADER_FIELDS",
    "JPEG_BATCHED",
    "KIND_NAMES",
    "RAW",
    "CompressedImageBytes",
    "DecodeCounts",
    "DecodingIterator",
    "DeviceDecodeLoader",
    "decode_images",
    "images_from_rows",
    "indexed",
    "largest_payload",
    "nvjpeg_backend",
    "payload",
    "read_headers",
]
