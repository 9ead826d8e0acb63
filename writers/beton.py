"""The one mechanism both converters use: checked images -> .beton + manifest, atomically."""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ffcv_inat import UserError, __version__
from ffcv_inat.atomic import abandon_queues_on_failure, atomic_outputs, format_size, free_bytes, mount_of, require_room
from ffcv_inat.environment import usable_cores
from ffcv_inat.beton import ClassEntry, Damaged, Integrity, Manifest, integrity_of, manifest_path

from .beton_size import estimate_beton_bytes
from .images import BadImage, decode_rgb, find_bad_images
from .jpeg_passthrough import StoredJPEG, file_passes_through, pass_through_field, pass_through_on
from .worker_failure import WorkerFailed, report_to, worker_failures_raise

WRITE_MODES = ("jpg", "raw", "proportion")
ON_ERROR = ("skip", "fail")
RUN_ONLY_OPTIONS = ("workers", "chunksize", "space_check")  # how a write ran, not what it wrote: not in the manifest


@dataclass(frozen=True)
class WriteOptions:
    max_res: int = 512
    write_mode: str = "jpg"
    jpeg_quality: int = 90
    compress_prob: float = 0.5  # only used by write_mode="proportion"
    workers: int = 0  # 0 = all usable cores
    on_error: str = "skip"
    chunksize: int = 100
    space_check: bool = True  # refuse a destination without room for the estimated size
    # write_mode jpg: a source JPEG that is baseline, colour and within max_res is stored byte for
    # byte instead of re-encoded (jpeg_passthrough); the iNat writer turns it on
    pass_through: bool = False

    def num_workers(self) -> int:
        return self.workers if self.workers > 0 else usable_cores()

    def validate(self) -> None:
        if self.write_mode not in WRITE_MODES:
            raise UserError(f"--write-mode must be one of {', '.join(WRITE_MODES)}, got {self.write_mode!r}")
        if self.on_error not in ON_ERROR:
            raise UserError(f"--on-error must be one of {', '.join(ON_ERROR)}, got {self.on_error!r}")
        if self.max_res < 8:
            raise UserError(f"--max-res must be at least 8, got {self.max_res}")
        if not 1 <= self.jpeg_quality <= 100:
            raise UserError(f"--jpeg-quality must be in 1..100, got {self.jpeg_quality}")
        if not 0.0 <= self.compress_prob <= 1.0:
            raise UserError(f"--compress-prob must be in 0..1, got {self.compress_prob}")


@dataclass(frozen=True)
class ClassInfo:
    id: str
    name: str
    supercategory: str | None


class LabelledImages:
    """Indexable (image, label) samples for ffcv's DatasetWriter, decoded in its workers.

    Files were checked before, so a failure here means the file changed under us; it must
    not kill the worker (the writer would wait forever), so it is recorded in `failure_dir`
    and a black pixel written instead, and the caller fails the whole write. A worker that
    dies anyway (in ffcv's code: a full disk) reports to the main process (worker_failure).
    """

    def __init__(self, paths: Sequence[str], labels: Sequence[int], max_res: int, failure_dir: str, through=None):
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.max_res = max_res
        self.failure_dir = failure_dir
        self.parent = os.getpid()
        self.through = through  # per sample: stored as it came (a StoredJPEG), else decoded

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        report_to(self.parent, self.failure_dir)
        try:
            if self.through is not None and self.through[i]:
                return StoredJPEG.read(self.paths[i]), int(self.labels[i])
            image = decode_rgb(self.paths[i], min_side=self.max_res)
        except (BadImage, OSError) as e:
            Path(self.failure_dir, str(i)).write_text(f"{self.paths[i]}\t{e}")
            image = np.zeros((1, 1, 3), dtype=np.uint8)
        return image, int(self.labels[i])


def _ffcv_fields(opts: WriteOptions) -> dict:
    from ffcv.fields import IntField, RGBImageField

    options = dict(max_resolution=opts.max_res, jpeg_quality=opts.jpeg_quality, compress_probability=opts.compress_prob)
    image = (
        pass_through_field(**options) if pass_through_on(opts) else RGBImageField(write_mode=opts.write_mode, **options)
    )
    return {"image": image, "label": IntField()}


def stored_as_they_come(paths: Sequence[str], opts: WriteOptions) -> np.ndarray | None:
    """Per file, whether it is stored byte for byte (its header read: I/O, in threads); None
    when the options re-encode every image."""
    if not pass_through_on(opts):
        return None
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, opts.num_workers())) as pool:
        return np.fromiter(
            pool.map(lambda p: file_passes_through(p, opts.max_res), paths, chunksize=256), bool, len(paths)
        )


def check_out_path(out: str | Path, overwrite: bool) -> Path:
    out = Path(out)
    if out.suffix != ".beton":
        raise UserError(f"--out must end in .beton, got {out}")
    if not out.parent.is_dir():
        raise UserError(f"output folder does not exist: {out.parent}")
    if not overwrite:
        for p in (out, manifest_path(out)):
            if p.exists():
                raise UserError(f"{p} exists: pass --overwrite to replace it")
    return out


@dataclass(frozen=True)
class BetonContents:
    """What a beton holds, as its manifest records it."""

    dataset: str
    split: str
    subset: str | None = None
    k: int | None = None
    seed: int | None = None
    notes: dict = field(default_factory=dict)


def write_beton(
    out: str | Path,
    samples: Sequence[tuple[str, int]],
    classes: Sequence[ClassInfo],
    contents: BetonContents,
    opts: WriteOptions,
    *,
    overwrite: bool = False,
    root: str | Path | None = None,
) -> Manifest:
    """Write samples (absolute path, label) to `out` and its manifest; return the manifest.

    Before the long work, the beton's size is estimated from a sample of the images and a
    destination without room for it is refused (unless `opts.space_check` is off). Paths in
    the manifest's `skipped` list are relative to `root` when given.
    """
    opts.validate()
    out = check_out_path(out, overwrite)
    if not samples:
        raise UserError(f"no images to write for {contents.dataset} {contents.split}")
    fields = _ffcv_fields(opts)
    size = estimate_beton_bytes([p for p, _ in samples], opts, fields, page_size_for(len(samples), opts.max_res))
    if opts.space_check:
        require_room(
            out,
            size.num_bytes,
            estimate=size.describe(),
            override="free some space, choose another --out, or pass --no-space-check",
        )
    print(
        f"{out}: ≈ {format_size(size.num_bytes)} ({size.describe()}); "
        f"{format_size(free_bytes(out.parent))} free on {mount_of(out)}",
        file=sys.stderr,
    )
    kept, bad = checked_samples(samples, opts, contents)
    manifest = Manifest(
        dataset=contents.dataset,
        split=contents.split,
        subset=contents.subset,
        k=contents.k,
        seed=contents.seed,
        num_images=len(kept),
        classes=class_entries(classes, kept),
        skipped=[{"path": os.path.relpath(p, root) if root is not None else p, "reason": r} for p, r in bad.items()],
        write_options={k_: v for k_, v in asdict(opts).items() if k_ not in RUN_ONLY_OPTIONS},
        notes=dict(contents.notes),
        version=__version__,
    )
    through = stored_as_they_come([p for p, _ in kept], opts)
    if through is not None:
        manifest.notes.update(stored_as_they_came=int(through.sum()), re_encoded=int(len(through) - through.sum()))
    write_files(out, kept, manifest, opts, fields, size.num_bytes, through)
    return manifest


def checked_samples(
    samples: Sequence[tuple[str, int]], opts: WriteOptions, contents: BetonContents
) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """(the samples whose files decode, {path: reason} of those that do not); with
    on_error=fail, or when none decodes, a one-line UserError."""
    bad = find_bad_images([p for p, _ in samples], opts.num_workers())
    if bad and opts.on_error == "fail":
        path, reason = next(iter(bad.items()))
        raise UserError(f"cannot read {path}: {reason} (use --on-error skip to leave such files out)")
    kept = [(p, y) for p, y in samples if p not in bad]
    if not kept:
        raise UserError(
            f"every image of {contents.dataset} {contents.split} failed to decode; first: {next(iter(bad.items()))}"
        )
    return kept, bad


def class_entries(classes: Sequence[ClassInfo], kept: Sequence[tuple[str, int]]) -> list[ClassEntry]:
    counts = Counter(y for _, y in kept)
    return [
        ClassEntry(label=i, id=c.id, name=c.name, supercategory=c.supercategory, num_images=counts.get(i, 0))
        for i, c in enumerate(classes)
    ]


def write_files(
    out: Path,
    kept: Sequence[tuple[str, int]],
    manifest: Manifest,
    opts: WriteOptions,
    fields: dict,
    expected_bytes: int,
    through: np.ndarray | None = None,
) -> None:
    """The beton (ffcv's DatasetWriter) and then its manifest, both or neither; `expected_bytes`
    is the estimate a full disk's error line quotes."""
    from ffcv.writer import DatasetWriter

    start = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="ffcv-inat-failures-") as failure_dir,
        atomic_outputs(manifest_path(out), out, expected_bytes=expected_bytes) as (tmp_json, tmp_beton),
    ):
        data = LabelledImages([p for p, _ in kept], [y for _, y in kept], opts.max_res, failure_dir, through)
        page_size = page_size_for(len(kept), opts.max_res)
        writer = DatasetWriter(str(tmp_beton), fields, num_workers=opts.num_workers(), page_size=page_size)
        try:
            with abandon_queues_on_failure(), worker_failures_raise(failure_dir):
                writer.from_indexed_dataset(data, chunksize=opts.chunksize)
        except WorkerFailed as e:
            if free_bytes(out.parent) < page_size:  # its page did not fit: atomic_outputs says so in one line
                raise OSError(errno.ENOSPC, "no room for a writer worker's page") from None
            raise UserError(f"an ffcv writer worker died ({e}); nothing was written") from None
        finally:
            _release_shared_memory(writer)
        failures = sorted((f for f in Path(failure_dir).iterdir() if f.name.isdigit()), key=lambda f: int(f.name))
        if failures:
            path, reason = failures[0].read_text().split("\t", 1)
            raise UserError(f"{path} could not be read while writing ({reason}); nothing was written")
        manifest.notes["write_seconds"] = round(time.perf_counter() - start, 3)
        manifest.integrity = _integrity_of_written(tmp_beton, len(kept))
        tmp_json.write_text(manifest.to_json())


def _integrity_of_written(beton: Path, num_images: int) -> Integrity:
    """Size, ffcv's sample count and sha256 of the just-written beton, for its manifest (one
    more read of the file, mostly from the page cache; sha256 ~0.9 GB/s on one core here)."""
    try:
        integrity = integrity_of(beton, progress=True)
    except Damaged as e:
        raise UserError(f"ffcv wrote an unreadable beton ({e}); nothing was written") from None
    if integrity.num_samples != num_images:
        raise UserError(f"ffcv wrote {integrity.num_samples} samples instead of {num_images}; nothing was written")
    return integrity


def page_size_for(num_images: int, max_res: int) -> int:
    """ffcv's default 8 MiB pages (as ffcv-imagenet) for real datasets; for small ones the
    2 MiB minimum, since every worker fills whole pages and a tiny beton would be mostly
    padding. A sample must fit in one page, hence the raw-size bound."""
    from ffcv.writer import MIN_PAGE_SIZE

    if num_images < 20_000 and max_res * max_res * 3 < MIN_PAGE_SIZE // 2:
        return MIN_PAGE_SIZE
    return 4 * MIN_PAGE_SIZE


def _release_shared_memory(writer) -> None:
    """ffcv leaves its metadata segment in /dev/shm if the write is interrupted."""
    sm = getattr(writer, "metadata_sm", None)
    if sm is None or isinstance(sm, int):
        return
    try:
        sm.close()
        sm.unlink()
    except (FileNotFoundError, OSError):
        pass
