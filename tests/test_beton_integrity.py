"""Beton integrity: damaged, cut or mismatched betons give one-line errors before
ffcv touches them; `write-beton --verify` recomputes the checksum. Real betons written by the
package, tiny (12 and 6 images)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ffcv_inat import UserError
from ffcv_inat.beton import (
    ALLOC_ENTRY,
    FIELD_DESC,
    FIELD_METADATA,
    HEADER,
    INT_FIELD,
    RGB_FIELD,
    check_beton,
    manifest_path,
    read_layout,
    read_manifest,
    record_integrity,
    verify_beton,
    verify_betons,
)
from ffcv_inat.classes import select_classes
from ffcv_inat.synthetic import make_imagenet
from ffcv_inat.writers.cli import main as write_beton_cli

WNIDS = select_classes("A")[:3]


@pytest.fixture(scope="module")
def betons(tmp_path_factory):
    """{'train': 12 images of 3 classes, 'val': 6 images of the same classes}, each with its manifest."""
    from ffcv_inat.writers.beton import BetonContents, ClassInfo, WriteOptions, write_beton
    from ffcv_inat.writers.imagenet import list_class_images

    root = tmp_path_factory.mktemp("integrity")
    tree = make_imagenet(root / "images", train_per_class=4, val_per_class=2, size=24, wnids=WNIDS)
    out = {}
    for split in ("train", "val"):
        out[split] = root / f"{split}.beton"
        write_beton(
            out[split],
            list_class_images(tree, split, WNIDS),
            [ClassInfo(w, w, "animal") for w in WNIDS],
            BetonContents("imagenet", split, "A"),
            WriteOptions(max_res=24, workers=1, write_mode="raw"),
        )
    return out


def copy_pair(beton: Path, dest: Path, name: str = "x") -> Path:
    """Copy a beton and its manifest to dest/NAME.beton + NAME.json."""
    dest.mkdir(parents=True, exist_ok=True)
    to = dest / f"{name}.beton"
    shutil.copyfile(beton, to)
    shutil.copyfile(manifest_path(beton), manifest_path(to))
    return to


def make_old_style(beton: Path) -> None:
    """Drop what manifests written before integrity was recorded did not hold."""
    path = manifest_path(beton)
    d = json.loads(path.read_text())
    del d["integrity"]
    path.write_text(json.dumps(d))


def error_of(fn, *args) -> str:
    with pytest.raises(UserError) as e:
        fn(*args)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_our_format_types_match_ffcvs():
    from ffcv.fields import FloatField, IntField, RGBImageField
    from ffcv.types import ALLOC_TABLE_TYPE, CURRENT_VERSION, FieldDescType, HeaderType
    from ffcv.writer import MAX_PAGE_SIZE, MIN_PAGE_SIZE

    from ffcv_inat.beton import integrity as bi

    assert (HEADER, FIELD_DESC, ALLOC_ENTRY) == (HeaderType, FieldDescType, ALLOC_TABLE_TYPE)
    assert (bi.FORMAT_VERSION, bi.MIN_PAGE_SIZE, bi.MAX_PAGE_SIZE) == (CURRENT_VERSION, MIN_PAGE_SIZE, MAX_PAGE_SIZE)
    assert FIELD_METADATA == {
        0: FloatField().metadata_type,
        INT_FIELD: IntField().metadata_type,
        RGB_FIELD: RGBImageField().metadata_type,
    }


@pytest.mark.timeout(60)
def test_written_manifest_records_what_it_describes(betons):
    beton = betons["train"]
    rec = read_manifest(beton).integrity
    assert rec.size_bytes == beton.stat().st_size
    assert rec.num_samples == 12 == read_layout(beton).num_samples
    assert rec.sha256 == hashlib.sha256(beton.read_bytes()).hexdigest()


@pytest.mark.timeout(60)
def test_correct_beton_passes_both_checks(betons, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a recorded manifest gives no warning
        assert check_beton(betons["train"]).num_images == 12
        assert verify_beton(betons["train"], progress=False).num_images == 12
        assert [m.num_images for m in verify_betons([betons["train"], betons["val"]], progress=False)] == [12, 6]
    r = CliRunner().invoke(write_beton_cli, ["--verify", str(betons["train"])])
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"OK {betons['train']}: 12 images, 3 classes")


def cut_points(beton: Path) -> dict[str, int]:
    layout = read_layout(beton)
    return {
        "empty": 0,
        "in the header": 10,
        "in the field table": HEADER.itemsize + 100,
        "in the metadata": layout.metadata_offset + 30,
        "in the data": layout.data_start + 1000,
        "in the allocation table": layout.alloc_table_ptr + 30,
        "one allocation entry short": layout.size_bytes - ALLOC_ENTRY.itemsize,
    }


@pytest.mark.timeout(60)
def test_truncated_copies(betons, tmp_path):
    beton = betons["train"]
    full = beton.stat().st_size
    old_messages = {
        "empty": "size 0 bytes: empty file",
        "in the header": "size 10 bytes, shorter than ffcv's 24-byte header: truncated copy, or not a beton?",
        "in the field table": "shorter than its header and field table (2,106 bytes): truncated copy?",
        "in the metadata": "but ffcv's header says 12 samples, whose metadata ends at byte",
        "in the data": "but ffcv's header puts the allocation table at byte",
        "in the allocation table": "is not whole 24-byte entries: truncated copy?",
        "one allocation entry short": "its allocation table has 11 entries, its 12 images need 12: truncated copy?",
    }
    for where, size in cut_points(beton).items():
        cut = copy_pair(beton, tmp_path / where.replace(" ", "_"))
        with open(cut, "r+b") as f:
            f.truncate(size)
        # With the size recorded, the size says it all.
        assert error_of(check_beton, cut) == f"{cut}: size {size:,} bytes, manifest says {full:,}: truncated copy?"
        # An old manifest: ffcv's own header and tables tell.
        make_old_style(cut)
        msg = error_of(check_beton, cut)
        assert msg.startswith(f"{cut}: ") and old_messages[where] in msg, (where, msg)


@pytest.mark.timeout(60)
def test_truncated_beton_fails_make_loader_and_cli_in_one_line(betons, tmp_path):
    import torch

    from ffcv_inat.loader import make_loader

    cut = copy_pair(betons["train"], tmp_path)
    with open(cut, "r+b") as f:
        f.truncate(100_000)
    with pytest.raises(UserError, match="size 100,000 bytes, manifest says .*: truncated copy"):
        make_loader(cut, batch_size=4, res=16, train=True, device=torch.device("cpu"), workers=1)
    proc = subprocess.run(
        [sys.executable, "-m", "ffcv_inat.writers.cli", "--verify", str(cut)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    full = betons["train"].stat().st_size
    assert proc.stderr.strip().splitlines() == [
        f"Error: {cut}: size 100,000 bytes, manifest says {full:,}: truncated copy?"
    ]
    assert proc.stdout == ""


@pytest.mark.timeout(60)
def test_garbage_and_zero_bytes(betons, tmp_path):
    size = betons["train"].stat().st_size
    rng = np.random.default_rng(0)
    for name, content in [("garbage", rng.integers(0, 256, size, dtype=np.uint8).tobytes()), ("zeros", bytes(size))]:
        bad = copy_pair(betons["train"], tmp_path, name)
        bad.write_bytes(content)
        for old in (False, True):
            if old:
                make_old_style(bad)
            msg = error_of(check_beton, bad)
            assert msg.startswith(f"{bad}: not an ffcv beton: its header says format version "), msg


@pytest.mark.timeout(60)
def test_same_size_damage_inside_the_data_needs_the_checksum(betons, tmp_path):
    bad = copy_pair(betons["train"], tmp_path)
    layout = read_layout(bad)
    data = bytearray(bad.read_bytes())
    data[layout.data_start + 100] ^= 0xFF
    bad.write_bytes(bytes(data))
    check_beton(bad)  # the cheap check does not read image data
    msg = error_of(verify_beton, bad, False)
    assert msg.startswith(f"{bad}: sha256 ") and "the contents changed (damaged copy?)" in msg
    r = CliRunner().invoke(write_beton_cli, ["--verify", str(bad), "--verify", str(betons["val"])])
    assert r.exit_code != 0
    assert f"FAILED {bad}: sha256" in r.output and f"OK {betons['val']}" in r.output
    assert "Error: 1 of 2 betons failed verification" in r.output and "Traceback" not in r.output
    msg = error_of(verify_betons, [bad, betons["val"]], False)
    assert msg.startswith(f"1 of 2 betons failed verification: {bad}: sha256 ")
    r = CliRunner().invoke(write_beton_cli, ["--record"])
    assert r.exit_code != 0 and "--record goes with --verify PATH.beton" in r.output


@pytest.mark.timeout(60)
def test_manifest_of_another_beton(betons, tmp_path):
    # The val beton (6 images) beside the train beton's manifest (12 images).
    swapped = copy_pair(betons["train"], tmp_path, "swapped")
    shutil.copyfile(betons["val"], swapped)
    val_size, train_size = betons["val"].stat().st_size, betons["train"].stat().st_size
    assert error_of(check_beton, swapped) == (
        f"{swapped}: size {val_size:,} bytes, manifest says {train_size:,}; ffcv's header says 6 samples, "
        "manifest says 12 images: is the manifest from another beton?"
    )
    make_old_style(swapped)
    assert error_of(check_beton, swapped) == (
        f"{swapped}: ffcv's header says 6 samples, manifest says 12 images: is the manifest from another beton?"
    )


@pytest.mark.timeout(60)
def test_labels_beyond_the_manifests_classes_and_counts_that_differ(betons, tmp_path):
    beton = copy_pair(betons["train"], tmp_path)
    path = manifest_path(beton)
    good = json.loads(path.read_text())
    fewer = dict(good, classes=good["classes"][:2])  # same file, same count: only the labels tell
    path.write_text(json.dumps(fewer))
    assert error_of(check_beton, beton) == (
        f"{beton}: it holds label 2, manifest has 2 classes (0..1): is the manifest from another beton?"
    )
    moved = json.loads(json.dumps(good))
    moved["classes"][0]["num_images"] += 1
    moved["classes"][2]["num_images"] -= 1
    path.write_text(json.dumps(moved))
    assert error_of(check_beton, beton) == (
        f"{beton}: images per class differ from the manifest's in 2 classes "
        "(label 0: 4 in the beton, manifest says 5): is the manifest from another beton?"
    )


@pytest.mark.timeout(60)
def test_missing_manifest_or_beton(betons, tmp_path):
    alone = tmp_path / "alone.beton"
    shutil.copyfile(betons["train"], alone)
    assert error_of(check_beton, alone) == (
        f"{alone}: its manifest {tmp_path / 'alone.json'} is missing (write-beton writes NAME.json beside "
        "NAME.beton: copy it along, or rewrite the beton)"
    )
    orphan = copy_pair(betons["train"], tmp_path, "orphan")
    orphan.unlink()
    assert error_of(check_beton, orphan) == (
        f"beton not found: {orphan} (its manifest orphan.json is there: was the beton renamed, or not copied?)"
    )
    assert error_of(check_beton, tmp_path / "nothing.beton") == f"beton not found: {tmp_path / 'nothing.beton'}"


@pytest.mark.timeout(60)
def test_old_style_manifest_loads_with_one_warning_and_can_be_recorded(betons, tmp_path):
    beton = copy_pair(betons["train"], tmp_path)
    make_old_style(beton)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            assert check_beton(beton).num_images == 12
    assert len(caught) == 1
    assert f"run `write-beton --verify {beton} --record` to record them" in str(caught[0].message)
    assert "records no checksum" in error_of(verify_beton, beton, False)
    r = CliRunner().invoke(write_beton_cli, ["--verify", str(beton), "--record"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"recorded {beton}: 12 images")
    assert read_manifest(beton).integrity == read_manifest(betons["train"]).integrity
    assert not list(tmp_path.glob(".*.tmp"))
    m, changed = record_integrity(beton, progress=False)  # already recorded: verified, left alone
    assert not changed and m.integrity == read_manifest(betons["train"]).integrity


@pytest.mark.timeout(120)
def test_ffcvs_loader_reads_a_checked_beton(betons):
    import torch

    from ffcv_inat.loader import make_loader

    loader = make_loader(betons["train"], batch_size=4, res=16, train=False, device=torch.device("cpu"), workers=1)
    labels = torch.cat([y.clone() for _, y in loader])
    assert sorted(labels.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
