"""write-beton's images/s with source JPEGs stored as they come (`WriteOptions.pass_through`, what
the iNat writer does) against every image decoded and re-encoded at --jpeg-quality.

    ffcv-bench write-speed --images DIR [--rounds 3] [--workers 2] [--max-res 512]

DIR is an ImageFolder tree (DIR/<class>/<image>); after one untimed write, each round writes it
both ways to a temporary folder, alternating which goes first, and times `write_beton` end to end (its file check, size
estimate, headers read, ffcv's writer and the sha256 included), as a user's write-beton runs.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ffcv_inat.bench.stats import Spread, spread

WAYS = ("as they come", "re-encoded")


@dataclass(frozen=True)
class WriteSpeed:
    way: str
    images_per_second: Spread
    images: int
    stored_as_they_came: int
    beton_bytes: int


def time_write(samples, classes, opts, out: Path) -> tuple[float, dict, int]:
    """Seconds of one write_beton of `samples`, its manifest notes and the beton's size."""
    from ffcv_inat.beton import manifest_path
    from ffcv_inat.writers.beton import BetonContents, write_beton

    start = time.perf_counter()
    m = write_beton(out, samples, classes, BetonContents("bench", "train"), opts)
    seconds = time.perf_counter() - start
    size = out.stat().st_size
    for p in (out, manifest_path(out)):
        p.unlink()
    return seconds, m.notes, size


def run_write_speed(images_dir, rounds: int, workers: int, max_res: int, echo: Callable = print) -> list[WriteSpeed]:
    from ffcv_inat.bench.data.image_folder import class_infos, list_image_folder
    from ffcv_inat.writers.beton import WriteOptions

    source = list_image_folder(images_dir)
    _, classes = class_infos(source.classes)
    base = WriteOptions(max_res=max_res, workers=workers)
    opts = {WAYS[0]: replace(base, pass_through=True), WAYS[1]: base}
    rates: dict[str, list[float]] = {w: [] for w in WAYS}
    last: dict[str, tuple[dict, int]] = {}
    with tempfile.TemporaryDirectory(prefix="ffcv-bench-write-") as tmp:
        # not timed: the first write pays ffcv's compilation and reads the files into the page cache
        time_write(source.samples, classes, base, Path(tmp) / "w.beton")
        for r in range(rounds):
            for way in WAYS if r % 2 == 0 else WAYS[::-1]:
                seconds, notes, size = time_write(source.samples, classes, opts[way], Path(tmp) / "w.beton")
                rate = len(source.samples) / seconds
                rates[way].append(rate)
                last[way] = (notes, size)
                echo(f"  {way:13s} round {r + 1}/{rounds}: {rate:,.0f} img/s, {size / 1e6:,.1f} MB")
    return [
        WriteSpeed(w, spread(rates[w]), len(source.samples), last[w][0].get("stored_as_they_came", 0), last[w][1])
        for w in WAYS
    ]
