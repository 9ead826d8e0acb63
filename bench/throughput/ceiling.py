"""This machine's ceiling for a loader: how fast its CPU decodes a beton's own stored JPEGs, and
decodes, crops, resizes and flips them, with as many threads as the ffcv loader runs (its
workers, capped at the usable cores), on the beton's first CEILING_IMAGES JPEGs.

It calls the very functions ffcv's compiled decoders call, ffcv's libffcv `imdecode`
(libjpeg-turbo) and `resize_crop` (OpenCV's INTER_AREA resize), on the boxes and flips the
seeded decoder cuts (`crops.crop_box`, epoch 0); the flip is OpenCV's. ctypes and OpenCV release
the GIL, so Python threads decode in parallel as ffcv's workers do. A loader cannot beat these
rates on this CPU: the fraction it reaches says how much its pipeline (reading, batching,
collation, shuffling) costs, and the decode-only rate what moving the resize elsewhere could win.

On a GPU the device's own ceiling is its batched nvJPEG decode of the same bytes
(`device_decode_rate`), the GPU data path's counterpart.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ffcv_inat.bench.stats import Spread, spread, throughput
from ffcv_inat.bench.data.stored_jpegs import StoredJpegs

# Each measured round lasts at least this long (the images are gone over again as needed), and
# there are this many: short rounds on a small beton move with every hiccup of a shared machine.
MIN_ROUND_SECONDS = 1.5
ROUNDS = 3


@dataclass(frozen=True)
class Ceiling:
    """Rates of this machine's CPU on a beton's stored JPEGs, images/s over measured rounds."""

    workers: int  # threads, as the ffcv loader runs them
    images: int  # distinct JPEGs timed
    mean_bytes: float
    decode: Spread  # decode only
    decode_resize: dict  # res -> Spread: decode + crop + resize + flip
    device_decode: Spread | None = None  # on a GPU: batched nvJPEG decode of the same bytes
    device: str | None = None  # the GPU's name, with device_decode


def _decode_chunk(jpegs: StoredJpegs, indices: range, res: int | None) -> None:
    """Decode (res None) or decode + crop + resize to res x res + flip the images `indices`."""
    import cv2
    from ffcv.libffcv import imdecode, resize_crop

    h_max, w_max = (int(v) for v in jpegs.sizes.max(axis=0))
    image = np.empty(h_max * w_max * 3, dtype=np.uint8)
    out = np.empty((res or 1, res or 1, 3), dtype=np.uint8)
    for i in indices:
        h, w = (int(v) for v in jpegs.sizes[i])
        view = image[: h * w * 3].reshape(h, w, 3)
        imdecode(jpegs.datas[i], view, h, w, h, w, 0, 0, 1, 1, False, False)
        if res is not None:
            top, left, ch, cw, flip = (int(v) for v in jpegs.boxes[i])
            resize_crop(view, top, top + ch, left, left + cw, out)
            if flip:
                cv2.flip(out, 1, dst=out)


# Images per task of a pass: the threads take tasks as they free up, so no thread waits at a
# pass's end for another's share of large images (a static half each measured 2-4% lower on
# 1,000 real photos, 2-core dev VM); a task's buffers are made once per task.
CHUNK_IMAGES = 32


def _one_pass(pool: ThreadPoolExecutor, jpegs: StoredJpegs, workers: int, res: int | None) -> None:
    """Every image once, in tasks of CHUNK_IMAGES the `workers` threads take in turn."""
    n = len(jpegs)
    for f in [
        pool.submit(_decode_chunk, jpegs, range(a, min(a + CHUNK_IMAGES, n)), res) for a in range(0, n, CHUNK_IMAGES)
    ]:
        f.result()


def round_rate(one_pass: Callable[[], int], min_seconds: float) -> float:
    """images/s of one round: passes (`one_pass` returns the images it did) until `min_seconds`
    have gone by."""
    images, start = 0, time.perf_counter()
    while True:
        images += one_pass()
        seconds = time.perf_counter() - start
        if seconds >= min_seconds:
            return throughput(images, seconds)


def timed_rounds(one_pass: Callable[[], int], rounds: int = ROUNDS, min_seconds: float = MIN_ROUND_SECONDS) -> Spread:
    """images/s of `rounds` rounds; one pass before them warms caches and threads, uncounted."""
    one_pass()
    return spread([round_rate(one_pass, min_seconds) for _ in range(rounds)])


class CeilingRounds:
    """The CPU ceiling measured a round at a time, so that its rounds can run between a
    loader's measured rounds and see the same load (a shared machine's changes within seconds).
    A context manager: its threads stop on exit."""

    def __init__(self, jpegs: StoredJpegs, workers: int, min_seconds: float = MIN_ROUND_SECONDS):
        if not len(jpegs):
            raise ValueError("no stored JPEGs to time")
        self.jpegs, self.workers, self.min_seconds = jpegs, workers, min_seconds
        self.pool = ThreadPoolExecutor(workers)
        self.decode: list[float] = []
        self.resized: dict[int, list[float]] = {}
        self._pass(None)  # warms the threads and caches, uncounted

    def _pass(self, res: int | None) -> int:
        _one_pass(self.pool, self.jpegs, self.workers, res)
        return len(self.jpegs)

    def round(self, res: int) -> tuple[float, float]:
        """One round of decode alone and one of decode + resize to `res`: their images/s."""
        if res not in self.resized:
            self._pass(res)  # the first at a new size allocates and warms its buffers
        self.decode.append(round_rate(lambda: self._pass(None), self.min_seconds))
        self.resized.setdefault(res, []).append(round_rate(lambda: self._pass(res), self.min_seconds))
        return self.decode[-1], self.resized[res][-1]

    def result(self) -> Ceiling:
        return Ceiling(
            self.workers,
            len(self.jpegs),
            self.jpegs.mean_bytes,
            spread(self.decode),
            {res: spread(rates) for res, rates in self.resized.items()},
        )

    def __enter__(self) -> "CeilingRounds":
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown()


def cpu_ceiling(
    jpegs: StoredJpegs, workers: int, resolutions, rounds: int = ROUNDS, min_seconds: float = MIN_ROUND_SECONDS
) -> Ceiling:
    """Decode-only and decode + resize rates of `jpegs` on `workers` threads, at each resolution,
    `rounds` rounds each."""
    with CeilingRounds(jpegs, workers, min_seconds) as c:
        for _ in range(rounds):
            for res in resolutions:
                c.round(int(res))
        return c.result()


def device_decode_rate(
    jpegs: StoredJpegs, device, batch: int, rounds: int = ROUNDS, min_seconds: float = MIN_ROUND_SECONDS
) -> Spread:
    """Batched decode_jpeg of the JPEGs on `device` (nvJPEG on a GPU), `batch` per call, the
    bytes already on the host in tensors as the GPU path's rows hold them; the clock stops once
    the device has finished."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    from ffcv_inat.loader import indexed

    device = indexed(torch.device(device))  # one device object: torchvision rebuilds nvJPEG on a change
    datas = [torch.from_numpy(d) for d in jpegs.datas]

    def one_pass() -> int:
        for k in range(0, len(datas), batch):
            decode_jpeg(datas[k : k + batch], mode=ImageReadMode.RGB, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return len(datas)

    return timed_rounds(one_pass, rounds, min_seconds)


# The ceiling reads at most this many of the beton's first samples into memory (~55 MB of
# 512-px JPEGs): enough for rates that do not depend on which images, on any beton's size.
CEILING_IMAGES = 1000


def open_ceiling(
    beton,
    workers: int,
    min_seconds: float = MIN_ROUND_SECONDS,
    samples: int = CEILING_IMAGES,
    echo: Callable[[str], None] = print,
    manifest=None,
) -> CeilingRounds | None:
    """Rounds of the CPU ceiling on `beton`'s first JPEGs, with as many threads as an ffcv
    loader of `workers` runs; None when the beton holds no JPEG. `manifest`: the beton's, checked."""
    from ffcv_inat.environment import resolve_workers

    from ffcv_inat.bench.data.stored_jpegs import read_stored_jpegs

    workers = resolve_workers(workers)  # the threads the ffcv loader really runs (capped at the usable cores)
    jpegs = read_stored_jpegs(beton, samples, workers=1, manifest=manifest)  # copying bytes: one worker is plenty
    if not len(jpegs):
        echo(f"ceiling: {beton} holds no JPEGs (raw pixels only): nothing to decode")
        return None
    echo(
        f"ceiling: {len(jpegs)} stored JPEGs of {jpegs.mean_bytes / 1e3:.0f} kB on average, {workers} threads, "
        "a round of it after each measured round of the loaders"
    )
    return CeilingRounds(jpegs, workers, min_seconds)


def echo_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ceiling_opened(rounds: CeilingRounds | None) -> bool:
    return rounds is not None


class CeilingProcess:
    """The ceiling's rounds in a process of its own (`isolated.Isolated`), as every loader of
    `ffcv-bench loader` runs: its threads share no process with a loader's. `opened` is False
    when the beton holds no JPEG."""

    def __init__(self, beton, workers: int, min_seconds: float = MIN_ROUND_SECONDS, manifest=None):
        from ffcv_inat.bench.throughput.isolated import Isolated

        self.process = Isolated(
            open_ceiling, beton, workers, min_seconds, CEILING_IMAGES, echo_to_stderr, manifest, name="ceiling"
        )
        self._opened: bool | None = None

    def opened(self) -> bool:
        """Whether there is a ceiling to measure (waits until its process is ready)."""
        if self._opened is None:
            self._opened = self.process.call(ceiling_opened)
        return self._opened

    def round(self, res: int) -> tuple[float, float]:
        return self.process.call(CeilingRounds.round, res)

    def finish(self, gpu_device=None, batch: int = 256) -> Ceiling:
        return self.process.call(finish_ceiling, gpu_device, batch)

    def close(self) -> None:
        self.process.close()


def finish_ceiling(rounds: CeilingRounds, gpu_device=None, batch: int = 256) -> Ceiling:
    """The ceiling of the rounds run, and with `gpu_device` (a CUDA device, when the GPU path is
    measured) the device's batched decode rate of the same bytes."""
    import torch

    c = rounds.result()
    if gpu_device is not None and torch.device(gpu_device).type == "cuda":
        from dataclasses import replace

        rate = device_decode_rate(rounds.jpegs, gpu_device, batch, min_seconds=rounds.min_seconds)
        c = replace(c, device_decode=rate, device=torch.cuda.get_device_name(torch.device(gpu_device)))
    return c


def ceiling_settings(c: Ceiling, res: int, rate: float, decode: str | None) -> dict:
    """What a loader row records of the ceiling: the rates (median, min, max), the fraction of
    decode + resize it reached, and for a GPU-path row the fraction of the device's decode rate."""

    def figure(s: Spread) -> dict:
        return {"median": round(s.median, 1), "min": round(s.min, 1), "max": round(s.max, 1)}

    out = {
        "threads": c.workers,
        "images": c.images,
        "decode": figure(c.decode),
        "decode_resize": figure(c.decode_resize[res]),
        "fraction": round(rate / c.decode_resize[res].median, 3),
    }
    if c.device_decode is not None and decode == "gpu":
        out.update(device_decode=figure(c.device_decode), device_fraction=round(rate / c.device_decode.median, 3))
    return out


def ceiling_lines(measured, c: Ceiling) -> list[str]:
    """One line per loader figure: its fraction of this machine's ceiling at its resolution."""
    from ffcv_inat.bench.stats import ceiling_sentence, spread_factor

    lines = []
    for m in measured:
        name = f"{m.pipeline}" + (f" {m.crop}/{m.decode} decode" if m.decode else "")
        line = f"res {m.res} {name} (spread {spread_factor(m.measured):.2f}x): " + ceiling_sentence(
            m.measured.median, c.decode_resize[m.res], c.decode, c.workers
        )
        if c.device_decode is not None and m.decode == "gpu":
            line += (
                f"; the device's batched decode alone ({c.device}): {c.device_decode.median:,.0f} img/s, "
                f"of which this is {100 * m.measured.median / c.device_decode.median:.0f}%"
            )
        lines.append(line)
    return lines
