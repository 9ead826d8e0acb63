"""Is this beton whole, and is it the one its manifest describes?

Betons are large and get copied between machines: copies get cut short, files renamed,
manifests mixed up. ffcv then fails with opaque errors ("negative dimensions are not
allowed", "index 0 is out of bounds") or, with another beton's manifest, trains on labels
that mean other classes. Two levels of checking:

- `check_beton(path)`: cheap and always on (every reader calls it before ffcv opens the
  file; `ffcv_inat.loader.make_loader` does unless handed the checked manifest). It reads
  the header, the field table, the per-sample metadata (not the image data) and the
  allocation table, and compares them with the manifest: size, sample count, labels within
  the classes, images per class.
- `verify_beton(path)`: the cheap check plus the sha256 of the whole file (a full read),
  for `write-beton --verify PATH` and `ffcv-sweep run --verify-betons`.

Both raise a one-line UserError naming the file and what differs. Manifests written before
the size, count and checksum were recorded still load, with one warning;
`record_integrity` (`write-beton --verify PATH --record`) adds them.

ffcv's file layout (ffcv 1.0.2: ffcv/types.py, writer.py, reader.py), read here with numpy
rather than ffcv's Reader, which fails opaquely on damaged files:

    header          24 B: version u2, num_fields u2, page_size u4, num_samples u8, alloc_table_ptr u8
    field table     num_fields x 1041 B: type_id u1, name u1[16], arguments u1[1024]
    metadata        num_samples rows, one aligned struct of every field's metadata
    data pages      images (page_size pages)
    alloc table     from alloc_table_ptr to the end: (sample_id u8, ptr u8, size u8) per allocation
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from .. import UserError
from ..atomic import write_text_atomic
from .manifest import Integrity, Manifest, manifest_path, read_manifest
from .view import is_view, label_problems, parent_differences, parent_of, range_indices

# ffcv 1.0.2's on-disk types (ffcv/types.py), repeated so that checking a beton does not import
# ffcv (seconds); tests/test_beton_integrity.py asserts they equal ffcv's.
FORMAT_VERSION = 2
HEADER = np.dtype(
    [
        ("version", "<u2"),
        ("num_fields", "<u2"),
        ("page_size", "<u4"),
        ("num_samples", "<u8"),
        ("alloc_table_ptr", "<u8"),
    ],
    align=True,
)
FIELD_DESC = np.dtype([("type_id", "<u1"), ("name", ("<u1", 16)), ("arguments", ("<u1", (1024,)))], align=True)
ALLOC_ENTRY = np.dtype([("sample_id", "<u8"), ("ptr", "<u8"), ("size", "<u8")])
FLOAT_FIELD, INT_FIELD, RGB_FIELD = 0, 1, 2
FIELD_METADATA = {  # type_id -> that field's metadata dtype (ffcv/fields/*.py)
    FLOAT_FIELD: np.dtype("<f8"),
    INT_FIELD: np.dtype("<i8"),
    RGB_FIELD: np.dtype([("mode", "u1"), ("width", "<u2"), ("height", "<u2"), ("data_ptr", "<u8")]),
}
FFCV_TYPE_IDS = range(7)  # ffcv.types.TYPE_ID_HANDLER without 255 (custom fields)
MIN_PAGE_SIZE, MAX_PAGE_SIZE = 1 << 21, 1 << 32  # ffcv.writer
LABEL_FIELD = "label"
CHUNK = 8 << 20  # bytes read per checksum update


class Damaged(Exception):
    """The file is not a readable ffcv beton; the message says why (without the path)."""


@dataclass(frozen=True)
class BetonLayout:
    """What ffcv's header and field table say about a file (`read_layout`)."""

    size_bytes: int
    num_samples: int
    page_size: int
    fields: dict[str, int]  # name -> ffcv type id, in file order
    metadata_dtype: np.dtype
    metadata_offset: int
    data_start: int  # first byte after the metadata
    alloc_table_ptr: int

    @property
    def num_alloc_entries(self) -> int:
        return (self.size_bytes - self.alloc_table_ptr) // ALLOC_ENTRY.itemsize


def _metadata_dtype(descriptors: np.ndarray) -> np.dtype:
    parts = []
    for d in descriptors:
        type_id = int(d["type_id"])
        if type_id not in FIELD_METADATA:  # fields write-beton never writes: ask ffcv (slow import)
            from ffcv.types import TYPE_ID_HANDLER

            try:
                parts.append(TYPE_ID_HANDLER[type_id].from_binary(d["arguments"]).metadata_type)
            except Exception as e:  # garbage arguments: whatever the field's parser raises
                raise Damaged(f"field type {type_id} unreadable by ffcv ({type(e).__name__}): damaged") from None
        else:
            parts.append(FIELD_METADATA[type_id])
    return np.dtype([("", t) for t in parts], align=True)


def _read_at(f, offset: int, nbytes: int) -> bytes:
    f.seek(offset)
    return f.read(nbytes)


def read_layout(path: str | Path) -> BetonLayout:
    """ffcv's header and field table of `path`, checked for consistency with the file's size;
    raises Damaged saying what is wrong (truncated, not a beton)."""
    size = os.path.getsize(path)
    if size == 0:
        raise Damaged("size 0 bytes: empty file")
    if size < HEADER.itemsize:
        raise Damaged(
            f"size {size:,} bytes, shorter than ffcv's {HEADER.itemsize}-byte header: truncated copy, or not a beton?"
        )
    with open(path, "rb") as f:
        header = np.frombuffer(_read_at(f, 0, HEADER.itemsize), dtype=HEADER)[0]
        version, num_fields = int(header["version"]), int(header["num_fields"])
        num_samples, page_size = int(header["num_samples"]), int(header["page_size"])
        alloc_ptr = int(header["alloc_table_ptr"])
        if version != FORMAT_VERSION:
            raise Damaged(
                f"not an ffcv beton: its header says format version {version}, ffcv writes "
                f"{FORMAT_VERSION} (garbage, or another kind of file)"
            )
        if num_fields == 0 or page_size & (page_size - 1) or not MIN_PAGE_SIZE <= page_size < MAX_PAGE_SIZE:
            raise Damaged(f"not an ffcv beton: its header says {num_fields} fields, page size {page_size:,}")
        table_end = HEADER.itemsize + num_fields * FIELD_DESC.itemsize
        if table_end > size:
            raise Damaged(
                f"size {size:,} bytes, shorter than its header and field table ({table_end:,} bytes): truncated copy?"
            )
        descriptors = np.frombuffer(_read_at(f, HEADER.itemsize, num_fields * FIELD_DESC.itemsize), dtype=FIELD_DESC)
    unknown = sorted({int(t) for t in descriptors["type_id"]} - set(FFCV_TYPE_IDS))
    try:
        names = [bytes(n).split(b"\0")[0].decode("ascii") for n in descriptors["name"]]
    except UnicodeDecodeError:
        names = None
    if unknown or names is None or len(set(names)) != len(names):
        raise Damaged(
            "not an ffcv beton: its field table is garbage" + (f" (field type {unknown[0]})" if unknown else "")
        )
    metadata_dtype = _metadata_dtype(descriptors)
    data_start = table_end + num_samples * metadata_dtype.itemsize
    if data_start > size:
        raise Damaged(
            f"size {size:,} bytes, but ffcv's header says {num_samples:,} samples, whose metadata ends at "
            f"byte {data_start:,}: truncated copy?"
        )
    if alloc_ptr > size:
        raise Damaged(
            f"size {size:,} bytes, but ffcv's header puts the allocation table at byte {alloc_ptr:,}: truncated copy?"
        )
    if alloc_ptr < data_start:
        raise Damaged(
            f"not an ffcv beton: its header puts the allocation table at byte {alloc_ptr:,}, inside "
            f"the metadata (which ends at {data_start:,})"
        )
    if (size - alloc_ptr) % ALLOC_ENTRY.itemsize:
        raise Damaged(
            f"its allocation table ({size - alloc_ptr:,} bytes from byte {alloc_ptr:,} to the end) is not "
            f"whole {ALLOC_ENTRY.itemsize}-byte entries: truncated copy?"
        )
    return BetonLayout(
        size_bytes=size,
        num_samples=num_samples,
        page_size=page_size,
        fields=dict(zip(names, (int(t) for t in descriptors["type_id"]))),
        metadata_dtype=metadata_dtype,
        metadata_offset=table_end,
        data_start=data_start,
        alloc_table_ptr=alloc_ptr,
    )


def read_labels(path: str | Path, layout: BetonLayout) -> np.ndarray:
    """The label of every sample, from the metadata table; also checks that the allocation table
    has an entry per image and that it and the images' metadata point into the data region
    (raises Damaged)."""
    if layout.fields.get(LABEL_FIELD) != INT_FIELD:
        raise Damaged(
            f"no integer '{LABEL_FIELD}' field (fields: {', '.join(layout.fields)}): not written by write-beton"
        )
    n = layout.num_samples
    with open(path, "rb") as f:
        metadata = np.frombuffer(
            _read_at(f, layout.metadata_offset, n * layout.metadata_dtype.itemsize), dtype=layout.metadata_dtype
        )
        alloc = np.frombuffer(
            _read_at(f, layout.alloc_table_ptr, layout.num_alloc_entries * ALLOC_ENTRY.itemsize), dtype=ALLOC_ENTRY
        )
    columns = dict(zip(layout.fields, layout.metadata_dtype.names))
    image_fields = [name for name, t in layout.fields.items() if t == RGB_FIELD]
    # Every image allocates exactly once (ffcv/fields/rgb_image.py), so a cut table has fewer entries.
    needed = n * len(image_fields)
    if len(alloc) < needed:
        raise Damaged(
            f"its allocation table has {len(alloc):,} entries, its {n:,} images need {needed:,}: truncated copy?"
        )
    if len(alloc) and (
        alloc["ptr"].min() < layout.data_start
        or (alloc["ptr"] + alloc["size"]).max() > layout.alloc_table_ptr
        or alloc["sample_id"].max() >= n
    ):
        raise Damaged("its allocation table points outside the data region: damaged")
    for name in image_fields:
        ptr = metadata[columns[name]]["data_ptr"]
        if n and (ptr.min() < layout.data_start or ptr.max() >= layout.alloc_table_ptr):
            raise Damaged(f"the metadata of field '{name}' points outside the data region: damaged")
    return metadata[columns[LABEL_FIELD]]


def sha256_of(path: str | Path, progress: bool = False) -> str:
    """The file's sha256 (hex, as `sha256sum` prints it), read in 8 MiB chunks."""
    h = hashlib.sha256()
    size = os.path.getsize(path)
    with (
        open(path, "rb") as f,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"sha256 {Path(path).name}",
            disable=None if progress else True,
            leave=False,
        ) as bar,
    ):  # None: shown on a terminal only
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            bar.update(n)
    return h.hexdigest()


def integrity_of(path: str | Path, progress: bool = False) -> Integrity:
    """What a manifest records about its beton: size, ffcv's sample count, sha256."""
    layout = read_layout(path)
    return Integrity(size_bytes=layout.size_bytes, num_samples=layout.num_samples, sha256=sha256_of(path, progress))


def _differences(beton: Path, manifest: Manifest) -> list[str]:
    """What differs between the beton and its manifest, cheaply; [] when nothing does."""
    rec = manifest.integrity
    size = beton.stat().st_size
    problems = []
    if rec is not None and size != rec.size_bytes:
        if size < rec.size_bytes and _header_agrees(beton, manifest):  # a cut copy: the rest would repeat it
            return [f"size {size:,} bytes, manifest says {rec.size_bytes:,}: truncated copy?"]
        problems.append(f"size {size:,} bytes, manifest says {rec.size_bytes:,}")
    try:
        layout = read_layout(beton)
        if layout.num_samples != manifest.num_images:  # labels and counts would only repeat it
            problems.append(
                f"ffcv's header says {layout.num_samples:,} samples, manifest says {manifest.num_images:,} images"
            )
        else:
            problems += _label_differences(read_labels(beton, layout), manifest)
    except Damaged as e:
        return problems + [str(e)]
    if problems:
        problems[-1] += ": is the manifest from another beton?"
    return problems


def _label_differences(labels: np.ndarray, manifest: Manifest) -> list[str]:
    k = manifest.num_classes
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        bad = labels.max() if labels.max() >= k else labels.min()
        return [f"it holds label {bad}, manifest has {k:,} classes (0..{k - 1})"]
    counts = np.bincount(labels, minlength=k)
    expected = np.array([c.num_images for c in manifest.classes])
    differ = np.flatnonzero(counts != expected)
    if len(differ):
        i = differ[0]
        return [
            f"images per class differ from the manifest's in {len(differ):,} classes (label {i}: "
            f"{counts[i]:,} in the beton, manifest says {expected[i]:,})"
        ]
    return []


def _header_agrees(beton: Path, manifest: Manifest) -> bool:
    """Whether the file is too short for a header or its header is ffcv's with the manifest's
    sample count (a cut copy keeps its header: ffcv writes it first and rewrites it last)."""
    with open(beton, "rb") as f:
        raw = f.read(HEADER.itemsize)
    if len(raw) < HEADER.itemsize:
        return True
    header = np.frombuffer(raw, dtype=HEADER)[0]
    return int(header["version"]) == FORMAT_VERSION and int(header["num_samples"]) == manifest.num_images


def _missing(beton: Path, need_manifest: bool) -> None:
    if not beton.is_file():
        json_path = manifest_path(beton)
        also = (
            f" (its manifest {json_path.name} is there: was the beton renamed, or not copied?)"
            if json_path.is_file()
            else ""
        )
        raise UserError(f"beton not found: {beton}{also}")
    if need_manifest and not manifest_path(beton).is_file():
        raise UserError(
            f"{beton}: its manifest {manifest_path(beton)} is missing (write-beton writes NAME.json "
            "beside NAME.beton: copy it along, or rewrite the beton)"
        )


_warned: set[str] = set()


def check_beton(beton: str | Path, manifest: Manifest | None = None, *, warn_unrecorded: bool = True) -> Manifest:
    """The cheap check, before ffcv touches the file: it exists, has a manifest, its size and
    ffcv's header agree with the manifest, its labels lie within the manifest's classes with
    the manifest's images per class. Returns the manifest (read from NAME.json unless given);
    raises a one-line UserError naming the file and what differs. Costs a few small reads
    (measured: bench/results/cpu-2core_2026-11-27_beton_check.txt). A view (NAME.view.json)
    is checked against its parent instead (`view.check_view`)."""
    if is_view(beton):
        return check_view(beton)
    beton = Path(beton)
    _missing(beton, need_manifest=manifest is None)
    if manifest is None:
        manifest = read_manifest(beton)
    problems = _differences(beton, manifest)
    if problems:
        raise UserError(f"{beton}: " + "; ".join(problems))
    if manifest.integrity is None and warn_unrecorded and str(beton.resolve()) not in _warned:
        _warned.add(str(beton.resolve()))  # once per beton and process, whoever calls
        warnings.warn(
            f"{manifest_path(beton)} records no size, sample count or checksum (written before "
            f"ffcv-inat recorded them): only partly checked; run `write-beton --verify {beton} --record` "
            "to record them, or rewrite the beton",
            UserWarning,
            stacklevel=2,
        )
    return manifest


def verify_beton(beton: str | Path, progress: bool = True) -> Manifest:
    """The cheap check plus the whole file's sha256 against the manifest's (a full read, with a
    progress bar when `progress`). Returns the manifest; raises a one-line UserError. A view:
    its parent's sha256 against the record the view was written against."""
    if is_view(beton):
        return verify_view(beton, progress)
    beton = Path(beton)
    manifest = check_beton(beton, warn_unrecorded=False)
    if manifest.integrity is None:
        raise UserError(
            f"{manifest_path(beton)} records no checksum (written before ffcv-inat recorded it): "
            f"run `write-beton --verify {beton} --record` to record one, or rewrite the beton"
        )
    digest = sha256_of(beton, progress)
    if digest != manifest.integrity.sha256:
        raise UserError(
            f"{beton}: sha256 {digest[:16]}…, manifest says {manifest.integrity.sha256[:16]}…: "
            "the contents changed (damaged copy?)"
        )
    return manifest


def verify_betons(betons: Iterable[str | Path], progress: bool = True) -> list[Manifest]:
    """`verify_beton` on each (for `ffcv-sweep run --verify-betons`); one UserError listing
    every failure, after checking them all."""
    manifests, failures, total = [], [], 0
    for beton in betons:
        total += 1
        try:
            manifests.append(verify_beton(beton, progress))
        except UserError as e:
            failures.append(str(e))
    if failures:
        raise UserError(f"{len(failures)} of {total} betons failed verification: " + "; ".join(failures))
    return manifests


def record_integrity(beton: str | Path, progress: bool = True) -> tuple[Manifest, bool]:
    """Record size, sample count and sha256 into an old manifest, atomically, after the cheap
    check passed. Returns (manifest, whether it was changed); a manifest that already records
    them is verified instead and left as it is."""
    if is_view(beton):
        raise UserError(f"{beton}: a view records its parent's integrity when written; --record is for betons")
    beton = Path(beton)
    manifest = check_beton(beton, warn_unrecorded=False)
    if manifest.integrity is not None:
        return verify_beton(beton, progress), False
    manifest.integrity = integrity_of(beton, progress)
    write_text_atomic(manifest_path(beton), manifest.to_json())
    return manifest, True


def check_view(view: str | Path) -> Manifest:
    """A view against its parent, cheaply (no image data read): the parent exists and passes
    `check_beton`, its integrity record is the one the view was written against, the view's
    indices are ascending, unique and in range, and give its classes and per-class counts.
    Returns the view's manifest; a one-line UserError names the view, the parent and what differs."""
    view = Path(view)
    if not view.is_file():
        raise UserError(f"view not found: {view}")
    m = read_manifest(view)
    if m.view is None:
        raise UserError(f"{view}: not a view (its manifest names no parent beton)")
    parent = parent_of(view, m)
    if not parent.is_file():
        raise UserError(f"{view}: its parent beton {parent} is missing (views name it relative to their folder)")
    differ = parent_differences(m, check_beton(parent, warn_unrecorded=False))
    if differ:
        raise UserError(f"{view}: its parent {parent} was rewritten or replaced since: " + "; ".join(differ))
    try:
        indices = range_indices(m.view.indices, m.view.integrity.num_samples)
    except ValueError as e:
        raise UserError(f"{view}: {e}") from None
    if len(indices) != m.num_images:
        raise UserError(f"{view}: its indices name {len(indices):,} samples, its manifest says {m.num_images:,} images")
    try:
        labels = read_labels(parent, read_layout(parent))
    except Damaged as e:
        raise UserError(f"{parent}: {e}") from None
    problems = label_problems(m, labels, indices)
    if problems:
        raise UserError(f"{view}: " + "; ".join(problems) + f" (parent {parent})")
    return m


def verify_view(view: str | Path, progress: bool = True) -> Manifest:
    """`check_view` plus the parent's whole-file sha256 against the record the view names."""
    m = check_view(view)
    parent = parent_of(view, m)
    digest = sha256_of(parent, progress)
    if digest != m.view.integrity.sha256:
        raise UserError(
            f"{view}: its parent {parent} has sha256 {digest}, the view was written against "
            f"{m.view.integrity.sha256}: the parent's data changed"
        )
    return m
