"""The device half of the GPU data path: a batch of stored bytes -> the model's input.

    images_from_rows        the whole step, what `device_loader` runs per batch:
      decode_images           JPEGs with torchvision's batched `decode_jpeg(..., device)`
                              (nvJPEG on a GPU); progressive and other JPEGs on the CPU, in the
                              same batch; raw samples are already pixels
      resized_crops           every sample's box resized to the output size in one batched
                              `torchvision.ops.roi_align` per memory-bounded chunk
      finish                  flip, normalise, dtype, channels-last

The same functions run with device="cpu" (the tests pass it to `make_loader`),
so what the GPU runs is what CPU tests pin.

Resize. roi_align with aligned=True samples the box's output pixels at their centres, each the
mean of ceil(box / output) x ceil(box / output) bilinear samples: an area filter when shrinking
(antialiased), bilinear when enlarging. Its bilinear taps reach one pixel beyond the box, which
inside an image is the image; at the image's bottom and right edges a replicated row and column
stand in for what is not there (top and left are clamped by roi_align itself), as the per-image
reference (torchvision's `resized_crop`) clamps. The two filters differ when shrinking (a box
of bilinear taps here, a triangle there): on smooth images shrunk up to 2x the mean difference is
under one level of 255; fine detail or larger shrinks differ more (~3-4 levels measured on noise
at 2x, and on a smooth image at 8x). The CPU path's OpenCV INTER_AREA is a third filter;
`tests/test_gpu_data_path.py` pins the bounds.

nvJPEG hazards (pytorch/vision PR #9606; meta-pytorch/torchcodec PR #1634): torchvision
allocates the decoded images on the caller's stream but nvJPEG writes them from another stream,
and its hardware engine writes when called, whatever the streams say; a block just freed on the
caller's stream while kernels that read it are still queued could be overwritten under them.
`_decode_jpegs` therefore waits on the host for the caller's stream before every decode call.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.ops import roi_align

from ... import UserError
from ..normalize import imagenet_stats
from .jpeg_bytes import JPEG_BATCHED, JPEG_OTHER, RAW, payload

# Most memory one chunk's padded float32 images may take; batches of large images are resized
# in several roi_align calls rather than one huge allocation.
CHUNK_BYTES = 512 * 2**20


@dataclass
class DecodeCounts:
    """How a loader's samples were decoded: the bench and the tests read it."""

    batched: int = 0  # JPEGs in the batched decode call on the device
    one_by_one: int = 0  # JPEGs the batched call refused, decoded alone on the device
    cpu: int = 0  # JPEGs the device does not decode (progressive, ...), decoded on the CPU
    raw: int = 0  # raw-mode samples, stored as pixels
    failed_batches: list[str] = field(default_factory=list)  # why a batched call failed (first few)

    def add(self, other: "DecodeCounts") -> None:
        self.batched += other.batched
        self.one_by_one += other.one_by_one
        self.cpu += other.cpu
        self.raw += other.raw
        self.failed_batches.extend(other.failed_batches[: max(0, 5 - len(self.failed_batches))])

    def as_dict(self) -> dict:
        return {"batched": self.batched, "one_by_one": self.one_by_one, "cpu": self.cpu, "raw": self.raw}


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A small host array on `device` without making the host wait: on a GPU through pinned
    memory with a non-blocking copy (a pageable copy would synchronise the stream, waiting for
    every kernel queued before it). The array is copied first, so its memory may change after."""
    tensor = torch.from_numpy(np.array(array, copy=True))
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def indexed(device: torch.device) -> torch.device:
    """`device` with its index: torchvision rebuilds (and leaks) its nvJPEG decoder whenever the
    device it is given changes, and "cuda" != "cuda:0"."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _decode_jpegs(datas: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    if device.type == "cuda":
        device = indexed(device)
        # See the module's nvJPEG hazards. A blocking event, so the host sleeps rather than spins.
        idle = torch.cuda.Event(blocking=True)
        idle.record(torch.cuda.current_stream(device))
        idle.synchronize()
        return decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)
    return decode_jpeg(datas, mode=ImageReadMode.RGB)


def _decode_on_cpu(data: torch.Tensor, index: int) -> torch.Tensor:
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB)
    except RuntimeError as e:
        raise UserError(f"sample {index}: its stored JPEG does not decode ({str(e).splitlines()[0]})") from None


def _refuse_a_broken_device_decoder(
    rows: np.ndarray, headers: np.ndarray, i: int, device: torch.device, error: str
) -> None:
    """Every device call of a batch failed: if sample i's JPEG decodes on the CPU (else that
    decode's own error), the device decoder is broken (nvJPEG missing, out of memory), and
    going on would decode the whole run one image at a time on one CPU thread, silently."""
    _decode_on_cpu(torch.from_numpy(payload(rows, headers, i)), int(headers[i, 9]))
    raise UserError(
        f"the {device} JPEG decoder failed on every JPEG of a batch that the CPU decodes ({error}); "
        "use data.decode: cpu"
    )


def decode_images(
    rows: np.ndarray, headers: np.ndarray, device: torch.device
) -> tuple[list[torch.Tensor], DecodeCounts]:
    """Each row's image as a 3 x H x W uint8 tensor on `device`, and how they were decoded.

    Baseline JPEGs go to one batched decode call on `device`; if that call fails, each is
    tried alone on `device` and then on the CPU. Other JPEGs are decoded on the CPU and copied
    over. Nothing here leaves an asynchronous read of `rows` behind (ffcv reuses its buffer).
    """
    n = len(headers)
    counts = DecodeCounts()
    images: list[torch.Tensor | None] = [None] * n
    on_cpu: list[int] = []
    batched: list[int] = []
    for i in range(n):
        kind = int(headers[i, 1])
        if kind == RAW:
            h, w = int(headers[i, 2]), int(headers[i, 3])
            pixels = torch.from_numpy(payload(rows, headers, i)).view(h, w, 3)
            images[i] = pixels.permute(2, 0, 1).to(device)  # a synchronous copy
            counts.raw += 1
        elif kind == JPEG_BATCHED:
            batched.append(i)
        elif kind == JPEG_OTHER:
            on_cpu.append(i)
        else:
            raise ValueError(f"sample {int(headers[i, 9])}: unknown payload kind {kind}")
    if batched:
        datas = [torch.from_numpy(payload(rows, headers, i)) for i in batched]
        try:
            for i, image in zip(batched, _decode_jpegs(datas, device)):
                images[i] = image
            counts.batched += len(batched)
        except RuntimeError as e:
            counts.failed_batches.append(str(e).splitlines()[0])
            for i, data in zip(batched, datas):
                try:
                    images[i] = _decode_jpegs([data], device)[0]
                    counts.one_by_one += 1
                except RuntimeError:
                    on_cpu.append(i)
            if counts.one_by_one == 0:
                _refuse_a_broken_device_decoder(rows, headers, batched[0], device, counts.failed_batches[-1])
    for i in on_cpu:
        data = torch.from_numpy(payload(rows, headers, i))
        images[i] = _decode_on_cpu(data, int(headers[i, 9])).to(device)
        counts.cpu += 1
    return images, counts


def size_chunks(heights: np.ndarray, widths: np.ndarray, max_bytes: int = CHUNK_BYTES) -> list[np.ndarray]:
    """Sample indices in groups whose padded float32 images ((max h + 1) x (max w + 1) x 3 each)
    fit in `max_bytes`; sorted by area so that similar sizes share a group. A group has at
    least one sample whatever its size."""
    order = np.argsort(np.asarray(heights, dtype=np.int64) * np.asarray(widths, dtype=np.int64), kind="stable")
    chunks, current, max_h, max_w = [], [], 0, 0
    for i in order:
        h, w = max(max_h, int(heights[i])), max(max_w, int(widths[i]))
        if current and (len(current) + 1) * (h + 1) * (w + 1) * 3 * 4 > max_bytes:
            chunks.append(np.array(current, dtype=np.int64))
            current, h, w = [], int(heights[i]), int(widths[i])
        current.append(int(i))
        max_h, max_w = h, w
    if current:
        chunks.append(np.array(current, dtype=np.int64))
    return chunks


def _pad_with_edges(images: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
    """float32 (n, 3, height, width) holding each image at the top left, its last row and column
    repeated once below and to the right; the rest is never read. One copy per image and two
    for the whole chunk: on a GPU each is a kernel launch from Python."""
    device = images[0].device
    padded = torch.empty((len(images), 3, height, width), dtype=torch.float32, device=device)
    for j, image in enumerate(images):
        padded[j, :, : image.shape[1], : image.shape[2]] = image
    n = torch.arange(len(images), device=device)
    hs = to_device(np.array([im.shape[1] for im in images], dtype=np.int64), device)
    ws = to_device(np.array([im.shape[2] for im in images], dtype=np.int64), device)
    padded[n, :, hs, :] = padded[n, :, hs - 1, :]  # the row below each image (whole width)
    padded[n, :, :, ws] = padded[n, :, :, ws - 1]  # then the column right of it, corner included
    return padded


def resized_crops(
    images: list[torch.Tensor], boxes: np.ndarray, size: tuple[int, int], max_chunk_bytes: int = CHUNK_BYTES
) -> torch.Tensor:
    """Box i (top, left, height, width) of images[i], resized to `size`: float32
    (n, 3, size[0], size[1]) in 0..255 on the images' device."""
    device = images[0].device
    n = len(images)
    out = torch.empty((n, 3, size[0], size[1]), dtype=torch.float32, device=device)
    heights = np.array([im.shape[1] for im in images], dtype=np.int64)
    widths = np.array([im.shape[2] for im in images], dtype=np.int64)
    for chunk in size_chunks(heights, widths, max_chunk_bytes):
        padded = _pad_with_edges(
            [images[i] for i in chunk], int(heights[chunk].max()) + 1, int(widths[chunk].max()) + 1
        )
        b = boxes[chunk].astype(np.float32)
        rois = np.stack(
            [np.arange(len(chunk), dtype=np.float32), b[:, 1], b[:, 0], b[:, 1] + b[:, 3], b[:, 0] + b[:, 2]], axis=1
        )
        resized = roi_align(
            padded, to_device(rois, device), output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True
        )
        out.index_copy_(0, to_device(chunk, device), resized)
        del padded, resized  # before the next chunk's are allocated: they are the batch's largest buffers
    return out


def finish(crops: torch.Tensor, flips: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """Mirror the rows whose flip is set, normalise with ImageNet's mean and std, cast to
    `dtype`, channels-last: the model's input. Works in place on `crops`."""
    device = crops.device
    mean, std = imagenet_stats(device)
    flipped = np.flatnonzero(np.asarray(flips))
    if len(flipped):  # in place, as the normalisation: a batch of float32 crops is ~150 MB at 224 px
        index = to_device(flipped, device)
        crops[index] = crops[index].flip(-1)
    crops.sub_(mean).div_(std)
    return crops.to(dtype=dtype, memory_format=torch.channels_last)


def images_from_rows(
    rows: np.ndarray, headers: np.ndarray, device: torch.device, size: tuple[int, int], dtype: torch.dtype
) -> tuple[torch.Tensor, DecodeCounts]:
    """A batch of `jpeg_bytes` rows as the model's input on `device`, and how it was decoded."""
    images, counts = decode_images(rows, headers, device)
    crops = resized_crops(images, headers[:, 4:8], size)
    del images  # ~200 MB of decoded 512-px images at batch 256, not needed by finish
    return finish(crops, headers[:, 8], dtype), counts


def nvjpeg_backend() -> str:
    """Which nvJPEG backend torchvision's decoder runs on this GPU. torchvision does not say,
    so this asks nvJPEG the question torchvision asks (can a hardware-backend handle be
    created?) of the libnvjpeg this process loaded: "hardware", "cuda (...)", or
    "unknown (...)". Call it after a CUDA decode, when the library is loaded."""
    if not torch.cuda.is_available():
        return "none (no CUDA)"
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "libnvjpeg" in line and "/" in line})
    except OSError as e:
        return f"unknown (cannot read /proc/self/maps: {e})"
    if not paths:
        return "unknown (no libnvjpeg loaded in this process)"
    try:
        lib = ctypes.CDLL(paths[0])
        handle = ctypes.c_void_p()
        hardware = 3  # NVJPEG_BACKEND_HARDWARE
        status = lib.nvjpegCreateEx(hardware, None, None, 0, ctypes.byref(handle))
    except (OSError, AttributeError) as e:
        return f"unknown ({paths[0]}: {e})"
    if status == 0:
        lib.nvjpegDestroy(handle)
        return "hardware"
    return f"cuda (nvJPEG refused a hardware-backend handle, status {status}; torchvision then decodes with CUDA)"
