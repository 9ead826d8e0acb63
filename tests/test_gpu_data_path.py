"""The GPU data path (`data.decode: gpu`) on the CPU, with the real ffcv, torch and torchvision.

ffcv workers copy each sample's stored bytes with a header (`ffcv_inat.loader.gpu.jpeg_bytes`),
the device decodes, crops, resizes, flips and normalises (`gpu.device_decode`), a thread does it
ahead of the consumer (`gpu.device_loader`). The same code runs with device "cpu" when the tests
ask (`make_loader(decode="gpu", device=cpu)`; $FFCV_INAT_GPU_PATH_ON_CPU=1 for the commands), so
what a GPU runs is pinned here (ffcv-train through the path: tests/test_gpu_path_training.py):

- the bytes op hands over every sample's exact stored bytes, its size, kind, index and the crop
  box of `crops.crop_box` (train, per epoch) or `crops.center_box` (eval);
- `jpeg_kind` sorts JPEGs into the device's batched decode and the CPU fallback;
- the batched crop + resize equals a per-image reference, whatever the memory chunking;
- `finish` normalises, casts, mirrors exactly; eval visits every image once, in order;
- a progressive JPEG inside a beton goes to the CPU fallback and decodes right;
- the CPU path and the GPU path crop the same box and flip the same way;
- `data.decode` in make_loader and resolve_decode.

One small beton of odd-sized JPEG and raw images (tests/helpers/betons.py) and a few
module-scoped loaders serve most tests: each ffcv Loader compiles its pipeline (seconds).
"""

import io
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as TF

from ffcv_inat import UserError
from ffcv_inat.loader import (
    DEFAULT_CROP_RATIO,
    GPU_PATH_ON_CPU,
    IMAGENET_MEAN,
    IMAGENET_STD,
    make_loader,
    resolve_decode,
)
from ffcv_inat.loader.crops import center_box, crop_box
from ffcv_inat.loader.gpu.device_decode import finish, resized_crops, size_chunks
from ffcv_inat.loader.gpu.jpeg_bytes import (
    HEADER_BYTES,
    HEADER_FIELDS,
    JPEG_BATCHED,
    JPEG_OTHER,
    RAW,
    jpeg_kind,
    largest_payload,
    payload,
    read_headers,
)
from ffcv_inat.writers.beton import WriteOptions
from helpers.betons import SIZES, gradient_image, write_gradient_beton, write_mixed_beton

SEED = 7
RES = 32
CPU = torch.device("cpu")
EVAL_BATCH = 5  # does not divide the beton's 32 samples: the last batch has 2
TRAIN_BATCH = 8
FIELD = {name: i for i, name in enumerate(HEADER_FIELDS)}
MEAN = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)


# ---------------------------------------------------------------------------------------------
# Shared data and loaders


@pytest.fixture(scope="module")
def beton(tmp_path_factory):
    return write_mixed_beton(tmp_path_factory.mktemp("gpu_path"))


def stored_samples(beton) -> list[dict]:
    """Every sample as the file stores it, read through ffcv's Reader and its allocation table:
    the exact bytes, storage mode (0 jpg, 1 raw), height, width, label."""
    from ffcv.reader import Reader

    reader = Reader(str(beton))
    meta = reader.metadata[f"f{reader.field_names.index('image')}"]
    labels = reader.metadata[f"f{reader.field_names.index('label')}"]
    size_at = {int(p): int(s) for p, s in zip(reader.alloc_table["ptr"], reader.alloc_table["size"])}
    out = []
    for m, label in zip(meta, labels):
        data = np.fromfile(beton, dtype=np.uint8, count=size_at[int(m["data_ptr"])], offset=int(m["data_ptr"]))
        out.append(
            {
                "bytes": data,
                "mode": int(m["mode"]),
                "height": int(m["height"]),
                "width": int(m["width"]),
                "label": int(label),
                "ptr": int(m["data_ptr"]),
            }
        )
    return out


@pytest.fixture(scope="module")
def stored(beton):
    samples = stored_samples(beton)
    assert {s["mode"] for s in samples} == {0, 1}, "the beton must hold both JPEG and raw samples"
    return samples


def decoded(sample: dict) -> torch.Tensor:
    """A stored sample as a 3 x H x W uint8 image, decoded by torchvision on the CPU (what
    device_decode runs with device "cpu")."""
    if sample["mode"] == 1:
        h, w = sample["height"], sample["width"]
        return torch.from_numpy(sample["bytes"][: h * w * 3].copy()).view(h, w, 3).permute(2, 0, 1)
    return decode_jpeg(torch.from_numpy(sample["bytes"].copy()), mode=ImageReadMode.RGB)


def gpu_loader(beton, *, train: bool, batch_size: int, workers: int = 2, **kw):
    return make_loader(
        beton,
        batch_size=batch_size,
        res=RES,
        train=train,
        device=CPU,
        workers=workers,
        seed=SEED,
        decode="gpu",
        dtype=torch.float32,
        **kw,
    )


@pytest.fixture(scope="module")
def gpu_eval(beton):
    return gpu_loader(beton, train=False, batch_size=EVAL_BATCH)


@pytest.fixture(scope="module")
def gpu_train(beton):
    return gpu_loader(beton, train=True, batch_size=TRAIN_BATCH)


def epoch_rows(loader, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of the bytes op's rows and the labels, straight from the ffcv Loader the GPU
    path's loader wraps (copied: ffcv reuses its buffers)."""
    loader.set_epoch(epoch)
    rows, labels = [], []
    for r, y in loader.source:
        rows.append(np.array(r, copy=True))
        labels.append(y.numpy().copy())
    return np.concatenate(rows), np.concatenate(labels)


def denormalised(images: torch.Tensor) -> torch.Tensor:
    return images.float() * STD + MEAN


# ---------------------------------------------------------------------------------------------
# 1. The bytes op: exact stored bytes and header


def check_rows(rows: np.ndarray, labels: np.ndarray, stored: list[dict]) -> np.ndarray:
    """Every row's header and payload against the file; returns the headers."""
    assert rows.dtype == np.uint8 and rows.shape[1] == HEADER_BYTES + max(len(s["bytes"]) for s in stored)
    headers = read_headers(rows)
    assert headers.shape == (len(rows), len(HEADER_FIELDS))
    for i, h in enumerate(headers):
        s = stored[h[FIELD["index"]]]
        assert np.array_equal(payload(rows, headers, i), s["bytes"]), i
        assert h[FIELD["nbytes"]] == len(s["bytes"])
        assert (h[FIELD["height"]], h[FIELD["width"]]) == (s["height"], s["width"])
        assert h[FIELD["kind"]] == (RAW if s["mode"] == 1 else JPEG_BATCHED)  # the writer's JPEGs are baseline
        assert labels[i] == s["label"]
    return headers


@pytest.mark.timeout(120)
def test_bytes_op_rows_hold_the_stored_bytes_and_eval_boxes(gpu_eval, stored, beton):
    assert largest_payload(beton) == max(len(s["bytes"]) for s in stored)
    rows, labels = epoch_rows(gpu_eval, 0)
    headers = check_rows(rows, labels, stored)
    assert headers[:, FIELD["index"]].tolist() == list(range(len(stored)))  # sequential, each once
    for h in headers:
        box = center_box(h[FIELD["height"]], h[FIELD["width"]], DEFAULT_CROP_RATIO)
        assert tuple(h[FIELD["top"] : FIELD["crop_width"] + 1]) == tuple(box) and h[FIELD["flip"]] == 0
    assert sorted(set(headers[:, FIELD["kind"]].tolist())) == [RAW, JPEG_BATCHED]


@pytest.mark.timeout(120)
def test_bytes_op_rows_carry_the_seeded_train_boxes_of_each_epoch(gpu_train, stored):
    boxes = {}
    for epoch in (3, 4):  # set after the pipeline was compiled: the compiled op reads the epoch
        rows, labels = epoch_rows(gpu_train, epoch)
        headers = check_rows(rows, labels, stored)
        index = headers[:, FIELD["index"]]
        assert sorted(index.tolist()) == list(range(len(stored)))  # 32 / 8: every sample once
        assert index.tolist() != list(range(len(stored)))  # shuffled
        for h in headers:
            expected = crop_box(SEED, epoch, h[FIELD["index"]], h[FIELD["height"]], h[FIELD["width"]])
            assert tuple(h[FIELD["top"] : FIELD["flip"] + 1]) == tuple(int(v) for v in expected), (epoch, h)
        boxes[epoch] = {int(h[FIELD["index"]]): tuple(h[FIELD["top"] : FIELD["flip"] + 1]) for h in headers}
        assert 0 < headers[:, FIELD["flip"]].sum() < len(stored)
    assert sum(boxes[3][i] != boxes[4][i] for i in boxes[3]) > len(stored) // 2  # another epoch, other crops


# ---------------------------------------------------------------------------------------------
# 2. jpeg_kind


def jpeg_bytes(image: Image.Image, **save) -> np.ndarray:
    buf = io.BytesIO()
    image.save(buf, "JPEG", **save)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8).copy()


def markers(data: np.ndarray) -> list[tuple[int, int]]:
    """(marker, offset) of the segments before the first scan (a test-side walk of the file)."""
    out, i = [], 2
    while i + 3 < len(data):
        assert data[i] == 0xFF
        marker = int(data[i + 1])
        out.append((marker, i))
        if marker == 0xDA:
            break
        i += 2 + (int(data[i + 2]) << 8 | int(data[i + 3]))
    return out


@pytest.fixture(scope="module")
def jpeg_cases() -> dict[str, tuple[np.ndarray, int]]:
    rgb = Image.fromarray(gradient_image(0, 24, 40))
    baseline = jpeg_bytes(rgb, quality=90)
    sof = dict(markers(baseline))[0xC0]
    exif = Image.Exif()
    exif[0x010F] = "ffcv-inat test camera"  # Make
    exif[0x0110] = "x" * 300  # Model: long enough for a length byte above 255
    with_app = jpeg_bytes(
        rgb, quality=90, exif=exif.tobytes(), icc_profile=bytes(range(256)) * 4, comment="a comment segment"
    )
    segments = [m for m, _ in markers(with_app)]
    assert segments.index(0xE1) < segments.index(0xC0) and segments.index(0xE2) < segments.index(0xC0)
    assert 0xFE in segments[: segments.index(0xC0)]  # COM before the frame header too

    def patched(data, offset, value):
        data = data.copy()
        data[offset] = value
        return data

    return {
        "baseline rgb": (baseline, JPEG_BATCHED),
        "baseline grayscale": (jpeg_bytes(rgb.convert("L"), quality=90), JPEG_BATCHED),
        "exif, icc and comment before SOF": (with_app, JPEG_BATCHED),
        "fill bytes before SOF": (
            np.concatenate([baseline[:sof], [0xFF, 0xFF], baseline[sof:]]).astype(np.uint8),
            JPEG_BATCHED,
        ),
        "progressive": (jpeg_bytes(rgb, quality=90, progressive=True), JPEG_OTHER),
        "cmyk": (jpeg_bytes(rgb.convert("CMYK"), quality=90), JPEG_OTHER),
        "extended sequential (SOF1)": (patched(baseline, sof + 1, 0xC1), JPEG_OTHER),
        "baseline, 2 components": (patched(baseline, sof + 9, 2), JPEG_OTHER),
        "truncated before SOF": (baseline[:sof], JPEG_OTHER),
        "truncated inside SOF": (baseline[: sof + 8], JPEG_OTHER),
        "soi only": (baseline[:2], JPEG_OTHER),
        "empty": (baseline[:0], JPEG_OTHER),
        "garbage": (np.random.default_rng(0).integers(0, 256, 500).astype(np.uint8), JPEG_OTHER),
        "garbage after SOI": (np.concatenate([baseline[:2], np.arange(100, 200)]).astype(np.uint8), JPEG_OTHER),
        "png": (np.frombuffer(_png(rgb), dtype=np.uint8).copy(), JPEG_OTHER),
    }


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.timeout(60)
def test_jpeg_kind_sorts_jpegs_for_the_batched_decoder(jpeg_cases):
    import numba

    compiled = numba.njit(jpeg_kind)  # as the bytes op's pipeline compiles it
    for name, (data, kind) in jpeg_cases.items():
        assert jpeg_kind(data) == kind, name
        assert compiled(data) == kind, name
    # The batched kinds are JPEGs torchvision decodes; the fill-byte variant too.
    for name in ("baseline rgb", "baseline grayscale", "exif, icc and comment before SOF", "fill bytes before SOF"):
        image = decode_jpeg(torch.from_numpy(jpeg_cases[name][0]), mode=ImageReadMode.RGB)
        assert image.shape == (3, 24, 40), name


# ---------------------------------------------------------------------------------------------
# 3. Batched crop + resize against a per-image reference; 4. size_chunks


def smooth_image(i: int, height: int, width: int) -> torch.Tensor:
    """Gradients and a sinusoid, no noise: where two resize filters (roi_align's area-like
    average, torchvision's antialiased triangle) agree to within rounding."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([255 * x / width, 255 * y / height, 127 + 100 * np.sin((x + 2 * y) / 7 + i)], axis=-1)
    return torch.from_numpy(np.clip(base, 0, 255).astype(np.uint8)).permute(2, 0, 1).contiguous()


# (image height, width, box top, left, height, width) for a 24 x 32 output (not square: rows and
# columns cannot be swapped): whole images, shrinking up to 2x, enlarging up to 8x, boxes at
# the bottom and right edges, the top left corner, extreme aspect ratios.
CROP_CASES = [
    (48, 64, 0, 0, 48, 64),  # whole image, 2x smaller
    (48, 64, 5, 7, 30, 40),
    (48, 64, 38, 52, 10, 12),  # bottom right corner, enlarged
    (48, 64, 40, 50, 8, 14),  # bottom edge, enlarged
    (90, 36, 10, 3, 70, 33),
    (90, 36, 70, 21, 20, 15),  # bottom right corner
    (12, 100, 0, 42, 12, 16),  # top and bottom edges, enlarged
    (33, 47, 1, 2, 31, 45),
    (56, 56, 0, 0, 56, 56),
    (40, 96, 37, 92, 3, 4),  # a tiny box in the corner, 8x larger
    (64, 48, 2, 1, 62, 47),  # right and bottom edges
    (20, 30, 0, 0, 12, 16),  # top left corner
]
OUT_HW = (24, 32)


@pytest.mark.timeout(60)
def test_resized_crops_equal_torchvision_resized_crop():
    """Within 1 level of 255 on average per image, flips included, for smooth images and boxes
    shrunk at most 2x or enlarged. The two filters differ (roi_align averages like a box,
    torchvision's antialiasing is a triangle), so with noise or stronger shrinks the gap grows:
    measured 2.9 levels for a 2x shrink of the noisy test images, 3.9 for an 8x shrink of a
    smooth one; the next test pins the shrink exactly instead."""
    images = [smooth_image(i, c[0], c[1]) for i, c in enumerate(CROP_CASES)]
    boxes = np.array([c[2:] for c in CROP_CASES], dtype=np.int64)
    got = resized_crops(images, boxes, OUT_HW)
    assert got.shape == (len(images), 3, *OUT_HW) and got.dtype == torch.float32
    flips = np.arange(len(images)) % 2 == 1
    model_input = denormalised(finish(got.clone(), flips, torch.float32))  # flipped, normalised and back
    for i, (image, case) in enumerate(zip(images, CROP_CASES)):
        reference = TF.resized_crop(image, *case[2:], size=list(OUT_HW), antialias=True)
        diff = (got[i] - reference.float()).abs().mean().item()
        assert diff < 1.0, (case, diff)
        if flips[i]:
            reference = TF.horizontal_flip(reference)
        assert (model_input[i] - reference.float()).abs().mean().item() < 1.0, case
        # And not merely close to any image: another box of the same image is far off.
        other = TF.resized_crop(image, 0, 0, case[0] // 2, case[1] // 2, size=list(OUT_HW), antialias=True)
        assert (got[i] - other.float()).abs().mean().item() > 3 * diff + 1, case


@pytest.mark.timeout(60)
def test_resized_crops_shrink_by_area_average_also_at_the_edges():
    """An integer shrink is an exact block average (roi_align samples the pixel centres), also for
    boxes touching the bottom and right edges, where the replicated padding gets zero weight.
    Noisy images: any other filter would show."""
    noisy = torch.from_numpy(gradient_image(3, 80, 100)).permute(2, 0, 1).contiguous()
    for top, left, factor in (
        (10, 20, 2),
        (80 - 48, 100 - 64, 2),
        (80 - 72, 100 - 96, 3),
        (80 - 24, 100 - 32, 1),
        (0, 0, 3),
    ):
        h, w = OUT_HW[0] * factor, OUT_HW[1] * factor
        got = resized_crops([noisy], np.array([[top, left, h, w]]), OUT_HW)[0]
        block = noisy[:, top : top + h, left : left + w].float().view(3, OUT_HW[0], factor, OUT_HW[1], factor)
        assert torch.allclose(got, block.mean((2, 4)), atol=1e-3), (top, left, factor)


@pytest.mark.timeout(60)
def test_resized_crops_do_not_depend_on_the_memory_chunks():
    """Mixed sizes (noisy, every pixel counts) in one chunk, in one chunk each (a 1-byte budget),
    and in several multi-sample chunks: identical results."""
    images = [
        torch.from_numpy(gradient_image(i, c[0], c[1])).permute(2, 0, 1).contiguous() for i, c in enumerate(CROP_CASES)
    ]
    boxes = np.array([c[2:] for c in CROP_CASES], dtype=np.int64)
    heights = np.array([c[0] for c in CROP_CASES])
    widths = np.array([c[1] for c in CROP_CASES])
    middle = 4 * 91 * 101 * 12  # about 4 of the largest padded images
    chunks = size_chunks(heights, widths, middle)
    assert 1 < len(chunks) < len(images) and max(len(c) for c in chunks) > 1
    one = resized_crops(images, boxes, OUT_HW)
    assert len(size_chunks(heights, widths)) == 1
    assert torch.equal(resized_crops(images, boxes, OUT_HW, max_chunk_bytes=1), one)
    assert torch.equal(resized_crops(images, boxes, OUT_HW, max_chunk_bytes=middle), one)


def chunk_bytes(heights, widths, chunk) -> int:
    return len(chunk) * (int(heights[chunk].max()) + 1) * (int(widths[chunk].max()) + 1) * 3 * 4


@pytest.mark.timeout(30)
def test_size_chunks_partitions_greedily_within_the_budget():
    rng = np.random.default_rng(0)
    heights = rng.integers(1, 300, 200)
    widths = rng.integers(1, 300, 200)
    by_area = np.argsort(heights * widths, kind="stable")
    for budget in (1, 20_000, 300_000, 5_000_000, 10**12):
        chunks = size_chunks(heights, widths, budget)
        flat = np.concatenate(chunks)
        assert sorted(flat.tolist()) == list(range(200))  # every index exactly once
        assert np.array_equal(flat, by_area)  # similar sizes together
        for chunk in chunks:
            assert chunk.dtype == np.int64 and len(chunk) >= 1
            assert chunk_bytes(heights, widths, chunk) <= budget or len(chunk) == 1
        for chunk, following in zip(chunks, chunks[1:]):  # greedy: the next sample did not fit
            assert chunk_bytes(heights, widths, np.concatenate([chunk, following[:1]])) > budget
        again = size_chunks(heights.copy(), widths.copy(), budget)
        assert len(again) == len(chunks) and all(np.array_equal(a, b) for a, b in zip(again, chunks))
    assert all(len(c) == 1 for c in size_chunks(heights, widths, 1))
    assert len(size_chunks(heights, widths, 10**12)) == 1
    assert size_chunks(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 1000) == []


# ---------------------------------------------------------------------------------------------
# 5. finish


@pytest.mark.timeout(30)
def test_finish_normalises_casts_flips_and_is_channels_last():
    crops = torch.rand(4, 3, 5, 7, generator=torch.Generator().manual_seed(0)) * 255
    flips = np.array([0, 1, 1, 0])
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    mirrored = torch.stack([c.flip(-1) if f else c for c, f in zip(crops, flips)])
    expected = (mirrored - mean) / std
    f64 = (mirrored.double().numpy() - np.reshape(IMAGENET_MEAN, (1, 3, 1, 1))) / np.reshape(IMAGENET_STD, (1, 3, 1, 1))
    assert np.allclose(expected.numpy(), f64, atol=1e-5)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        work = crops.clone()
        out = finish(work, flips, dtype)
        assert out.dtype == dtype and out.shape == crops.shape
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert out.stride() == (3 * 5 * 7, 1, 7 * 3, 3)
        assert torch.equal(out, expected.to(dtype))
        assert torch.equal(work, expected)  # documented: it works in place on its input
    out = finish(crops.clone(), flips, torch.float32)
    alone = finish(crops.clone(), np.zeros(4, dtype=bool), torch.float32)
    assert torch.equal(out[1], alone[1].flip(-1)) and torch.equal(out[0], alone[0])  # an exact mirror
    assert torch.equal(finish(crops.clone(), flips.astype(bool), torch.float32), out)  # 0/1 or bool flags
    assert torch.allclose(denormalised(out), mirrored, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# 6. Eval visits every image once


def reference_eval_image(sample: dict) -> torch.Tensor:
    """One stored sample through the same functions alone: decode, centre box, resize, finish."""
    box = np.array([center_box(sample["height"], sample["width"], DEFAULT_CROP_RATIO)], dtype=np.int64)
    return finish(resized_crops([decoded(sample)], box, (RES, RES)), np.array([False]), torch.float32)[0]


@pytest.mark.timeout(120)
def test_eval_visits_every_image_once_in_order(gpu_eval, stored):
    before = gpu_eval.counts.as_dict()
    batches = list(gpu_eval)  # kept without copying: the path hands out its own tensors
    sizes = [len(y) for _, y in batches]
    assert sizes == [EVAL_BATCH] * (len(stored) // EVAL_BATCH) + [len(stored) % EVAL_BATCH]
    for images, labels in batches:
        assert images.shape[1:] == (3, RES, RES) and images.dtype == torch.float32
        assert images.is_contiguous(memory_format=torch.channels_last)
        assert labels.dtype == torch.int64 and labels.device == CPU
    images = torch.cat([x for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    assert labels.tolist() == [s["label"] for s in stored]
    for i, sample in enumerate(stored):  # image i is sample i's, exactly
        assert torch.equal(images[i], reference_eval_image(sample)), i
    after = gpu_eval.counts.as_dict()
    jpegs = sum(s["mode"] == 0 for s in stored)
    assert {k: after[k] - before[k] for k in after} == {
        "batched": jpegs,
        "one_by_one": 0,
        "cpu": 0,
        "raw": len(stored) - jpegs,
    }
    assert gpu_eval.counts.failed_batches == []


# ---------------------------------------------------------------------------------------------
# 7. A progressive JPEG inside a beton goes to the CPU fallback


def progressive_no_larger(image: torch.Tensor, size: int) -> np.ndarray:
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    for quality in (90, 80, 70, 60, 50, 40):
        data = jpeg_bytes(pil, quality=quality, progressive=True)
        if len(data) <= size:
            return data
    raise AssertionError("no progressive JPEG as small as the stored one")


@pytest.mark.timeout(120)
def test_a_progressive_jpeg_in_the_beton_is_decoded_by_the_fallback(tmp_path):
    beton = write_gradient_beton(tmp_path / "jpg.beton", len(SIZES), "val", WriteOptions(write_mode="jpg", workers=1))
    stored = stored_samples(beton)
    assert {s["mode"] for s in stored} == {0}
    target = 5
    old = stored[target]
    progressive = progressive_no_larger(decoded(old), len(old["bytes"]))
    padded = np.zeros(len(old["bytes"]), dtype=np.uint8)  # zeros after EOI: decoders stop at EOI
    padded[: len(progressive)] = progressive
    assert jpeg_kind(padded) == JPEG_OTHER
    expected_image = decode_jpeg(torch.from_numpy(padded.copy()), mode=ImageReadMode.RGB)
    assert torch.equal(expected_image, decode_jpeg(torch.from_numpy(progressive), mode=ImageReadMode.RGB))
    with open(beton, "r+b") as f:  # the same size in the same place: the beton's layout is unchanged
        f.seek(old["ptr"])
        f.write(padded.tobytes())
    now = stored_samples(beton)
    assert np.array_equal(now[target]["bytes"], padded)

    loader = gpu_loader(beton, train=False, batch_size=3, workers=1)  # check_beton: size and count still match
    images = torch.cat([x for x, _ in loader])
    assert loader.counts.as_dict() == {"batched": len(SIZES) - 1, "one_by_one": 0, "cpu": 1, "raw": 0}
    assert torch.equal(images[target], reference_eval_image(now[target]))
    for i in range(len(SIZES)):
        assert torch.equal(images[i], reference_eval_image(now[i])), i


# ---------------------------------------------------------------------------------------------
# 8. One crop, two paths


@pytest.mark.timeout(180)
def test_cpu_and_gpu_paths_crop_the_same_box_and_flip(beton, gpu_train):
    """The CPU seeded decoder (ffcv's JPEG decode, OpenCV's INTER_AREA resize, uint8) and the
    GPU path (torchvision's decode, roi_align, float) for the same (seed, epoch, sample):
    the same box and flip, pixels apart only by decoder and resize filter. Measured on this
    beton at 32 px (noisy images): about 1 level of 255 per image where the box is shrunk or
    kept, up to about 5 where it is enlarged 3x (OpenCV's INTER_AREA does not interpolate
    linearly when enlarging); a mirrored image is 28+ levels away."""
    cpu = make_loader(beton, batch_size=TRAIN_BATCH, res=RES, train=True, device=CPU, workers=2, seed=SEED)
    for epoch in (2, 5):
        rows, row_labels = epoch_rows(gpu_train, epoch)  # the order and boxes of this epoch
        headers = read_headers(rows)
        cpu.set_epoch(epoch)
        gpu_train.set_epoch(epoch)
        a = [(x.clone(), y.clone()) for x, y in cpu]  # clone: ffcv reuses the CPU path's buffers
        g = list(gpu_train)
        cpu_images = denormalised(torch.cat([x for x, _ in a]))  # both loaders hand out normalised batches
        assert cpu_images.shape == (len(rows), 3, RES, RES)
        gpu_images = denormalised(torch.cat([x for x, _ in g]))
        labels = torch.cat([y for _, y in a])
        assert torch.equal(labels, torch.cat([y for _, y in g])) and labels.tolist() == row_labels.tolist()
        diff = (cpu_images - gpu_images).abs().mean((1, 2, 3))
        mirror = (cpu_images - gpu_images.flip(-1)).abs().mean((1, 2, 3))
        enlarged = np.minimum(headers[:, FIELD["crop_height"]], headers[:, FIELD["crop_width"]]) < RES / 2
        assert 0 < enlarged.sum() < len(rows)
        assert diff.max() < 8, diff
        assert diff[torch.from_numpy(~enlarged)].max() < 3, diff
        assert diff.median() < 2, diff
        assert (diff * 4 < mirror).all(), (diff, mirror)  # the flips agree


# ---------------------------------------------------------------------------------------------
# 9. resolve_decode and make_loader's refusals


@pytest.mark.timeout(30)
def test_resolve_decode(beton):
    cuda = torch.device("cuda")  # only a name here: nothing runs on it
    assert resolve_decode("auto", CPU) == "cpu" and resolve_decode("cpu", CPU) == "cpu"
    assert resolve_decode("auto", cuda) == "gpu" and resolve_decode("gpu", cuda) == "gpu"
    assert resolve_decode("cpu", cuda) == "cpu"
    with pytest.raises(UserError, match=r"data\.decode: gpu needs a CUDA device") as e:
        resolve_decode("gpu", CPU)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"data\.decode must be one of cpu, gpu, auto, got 'nvjpeg'"):
        resolve_decode("nvjpeg", CPU)
    # The tests' switch: the GPU path's code on the CPU. make_loader takes the decision as made.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(GPU_PATH_ON_CPU, "1")
        assert resolve_decode("gpu", CPU) == "gpu"
        assert resolve_decode("auto", CPU) == "cpu"
        mp.setenv(GPU_PATH_ON_CPU, "0")
        with pytest.raises(UserError, match=r"data\.decode: gpu needs a CUDA device"):
            resolve_decode("gpu", CPU)
    with pytest.raises(ValueError, match="decode must be resolved to cpu or gpu"):
        make_loader(beton, batch_size=4, res=RES, train=False, device=CPU, workers=1, decode="auto")
    with pytest.raises(UserError, match=r"data\.crop: ffcv has no GPU path"):
        make_loader(beton, batch_size=4, res=RES, train=True, device=CPU, workers=1, decode="gpu", crop="ffcv")


# ---------------------------------------------------------------------------------------------
# 10. Early stop


def wait_until(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the loader's threads did not fill their queues"
        time.sleep(0.02)


# When the rest of an epoch fits in the queues ahead of the consumer, ffcv's loading thread has
# produced every batch and blocks on putting its end-of-epoch marker into its full queue, with no
# timeout (ffcv 1.0.2, EpochIterator.run), deaf to terminate_event: stop() must empty that
# queue. The GPU path meets it more often: its decode thread takes 1 + queue_depth batches more
# from ffcv. Cases marked `ends` build that state; "mid-epoch" is the ordinary early stop.
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "decode, batch_size, ends",
    [("gpu", 5, True), ("gpu", 2, False), ("cpu", 8, True)],
    ids=["gpu-rest-fits-the-queues", "gpu-mid-epoch", "cpu-rest-fits-the-queue"],
)
def test_stopping_an_epoch_early_does_not_hang(beton, stored, decode, batch_size, ends):
    loader = make_loader(
        beton, batch_size=batch_size, res=RES, train=False, device=CPU, workers=1, decode=decode, dtype=torch.float32
    )
    batches = -(-len(stored) // batch_size)
    it = iter(loader)
    images, labels = next(it)
    assert len(labels) == len(images) == batch_size
    ffcv_iterator = it.inner.ffcv if decode == "gpu" else it.ffcv
    if decode == "gpu":  # the decode thread has taken 1 + queue_depth batches, ffcv's queue is full
        wait_until(lambda: it.queue.full() and ffcv_iterator.output_queue.full())
        assert (1 + 2 + 1 + loader.source.loader.batches_ahead >= batches) == ends
    else:
        wait_until(lambda: ffcv_iterator.output_queue.full())
        assert (1 + loader.loader.batches_ahead >= batches) == ends
    stopper = threading.Thread(target=it.stop, daemon=True)
    stopper.start()
    stopper.join(timeout=15)  # a hang detector: it takes well under a second when it works
    assert not stopper.is_alive(), "stop() hangs (ffcv's end-of-epoch put on a full queue)"
    assert not ffcv_iterator.is_alive()  # no loading thread left behind
    if decode == "gpu":
        assert not it._thread.is_alive()
    epoch = [(len(y), x.shape[1:]) for x, y in loader]  # a whole epoch after the stop
    assert sum(n for n, _ in epoch) == len(stored) and len(epoch) == batches
    assert all(shape == (3, RES, RES) for _, shape in epoch)


# ffcv's Squeeze() made a last batch of one label a 0-d tensor, and ffcv's thread died on it.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("decode", ["cpu", "gpu"])
def test_a_last_batch_of_one_image_is_evaluated(beton, stored, decode):
    loader = make_loader(
        beton,
        batch_size=len(stored) - 1,
        res=RES,
        train=False,
        device=CPU,
        workers=1,
        decode=decode,
        dtype=torch.float32,
    )
    with iter(loader) as epoch:
        batches = [(len(x), y.clone()) for x, y in epoch]
    assert [n for n, _ in batches] == [len(stored) - 1, 1]
    assert torch.cat([y for _, y in batches]).tolist() == [s["label"] for s in stored]


def ffcv_thread_raises_after(ffcv_iterator, batches: int) -> None:
    """Make ffcv's loading thread raise when it asks for batch number `batches` of the epoch,
    as a pipeline that raises makes it die (it reads its batches' indices from iter_ixes)."""
    rest = ffcv_iterator.iter_ixes

    def indices():
        for _ in range(batches):
            yield next(rest)
        raise ValueError("a pipeline error in ffcv's thread")

    ffcv_iterator.iter_ixes = indices()


# Before: the consumer raised after 10 s, stopping took another 120 s and left the thread alive.
@pytest.mark.timeout(60)
@pytest.mark.parametrize("decode", ["cpu", "gpu"])
def test_a_dead_ffcv_thread_ends_the_epoch_at_once(beton, decode):
    loader = make_loader(
        beton, batch_size=1, res=RES, train=False, device=CPU, workers=1, decode=decode, dtype=torch.float32
    )
    it = iter(loader)
    ffcv_thread_raises_after(it.inner.ffcv if decode == "gpu" else it.ffcv, 2)  # 32 batches: it is far from done
    start = time.monotonic()
    with pytest.raises(UserError, match=r"^ffcv's loading thread stopped before the end of the epoch") as e:
        for _ in it:
            pass
    assert "\n" not in str(e.value)
    it.stop()
    assert time.monotonic() - start < 5
    assert not it.is_alive() if decode == "gpu" else not it.ffcv.is_alive()


@pytest.mark.timeout(60)
def test_a_broken_device_decoder_is_an_error_not_cpu_decoding(gpu_eval, monkeypatch):
    """nvJPEG missing or out of memory: every device call fails. That would decode the run on
    one CPU thread, one image at a time, silently; it is a one-line error instead."""
    from ffcv_inat.loader.gpu import device_decode

    rows, _ = epoch_rows(gpu_eval, 0)
    headers = read_headers(rows)
    assert (headers[:, FIELD["kind"]] == JPEG_BATCHED).any()

    def broken(datas, device):
        raise RuntimeError("nvjpegCreate failed\nmore")

    monkeypatch.setattr(device_decode, "_decode_jpegs", broken)  # our own function, in place of nvJPEG
    with pytest.raises(
        UserError,
        match=r"^the cpu JPEG decoder failed on every JPEG of a batch that the CPU "
        r"decodes \(nvjpegCreate failed\); use data.decode: cpu$",
    ):
        device_decode.decode_images(rows, headers, CPU)
