"""write-beton end to end with the real ffcv DatasetWriter and Loader."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ffcv_inat.beton import read_manifest
from ffcv_inat.classes import select_classes
from ffcv_inat.synthetic import make_imagenet
from ffcv_inat.writers.cli import main as write_beton

WNIDS_A3 = select_classes("A")[:3]


def read_all(beton: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every (full-size image, label) of a beton of equal-sized images, in index order."""
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor

    loader = Loader(
        str(beton),
        batch_size=16,
        num_workers=1,
        order=OrderOption.SEQUENTIAL,
        drop_last=False,
        pipelines={"image": [SimpleRGBImageDecoder()], "label": [IntDecoder(), ToTensor()]},
    )
    images, labels = [], []
    for x, y in loader:  # ffcv reuses its buffers: copy each batch out
        images.append(np.array(x, copy=True))
        labels.append(y.numpy().reshape(-1).copy())
    return np.concatenate(images), np.concatenate(labels)


def run(args, **kw):
    result = CliRunner().invoke(write_beton, [str(a) for a in args], catch_exceptions=False, **kw)
    return result


@pytest.fixture(scope="module")
def small_imagenet(tmp_path_factory):
    """Three A classes only, for the subset-independent tests (all=1000 folders is slower)."""
    return make_imagenet(tmp_path_factory.mktemp("in3"), train_per_class=4, val_per_class=2, size=40, wnids=WNIDS_A3)


@pytest.mark.timeout(120)
# Synthetic images carry pixel noise, the worst case for JPEG: q90 re-encoding changes a
# pixel by ~6 on average here; another image differs by ~50.
@pytest.mark.parametrize("mode,tolerance", [("raw", 0.0), ("jpg", 10.0)])
def test_round_trip_every_image_with_its_label(small_imagenet, tmp_path, mode, tolerance):
    from ffcv_inat.writers.beton import BetonContents, ClassInfo, WriteOptions, write_beton as write
    from ffcv_inat.writers.imagenet import list_class_images

    # The small tree has three classes only, so call the shared writer directly with them.
    samples = list_class_images(small_imagenet, "train", WNIDS_A3)
    out = tmp_path / f"rt_{mode}.beton"
    write(
        out,
        samples,
        [ClassInfo(w, w, "animal") for w in WNIDS_A3],
        BetonContents("imagenet", "train", "A"),
        WriteOptions(write_mode=mode, workers=2),
    )
    images, labels = read_all(out)
    assert labels.tolist() == [y for _, y in samples]
    for img, (path, _) in zip(images, samples):
        source = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        assert img.shape == source.shape
        assert np.abs(img - source).mean() <= tolerance, path
    m = read_manifest(out)
    assert m.num_images == 12 and [c.num_images for c in m.classes] == [4, 4, 4]
    assert m.write_options["write_mode"] == mode
    assert m.integrity.num_samples == 12 and m.integrity.size_bytes == out.stat().st_size


@pytest.mark.timeout(180)
def test_cli_subsets_labels_and_manifest(imagenet_dir, tmp_path):
    out = tmp_path / "na300.beton"
    r = run(["--data-dir", imagenet_dir, "--subset", "NA", "--k", 300, "--out", out, "--workers", 2])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "na300.json").read_text())
    wnids = select_classes("NA", 300, 0)
    assert [c["id"] for c in m["classes"]] == wnids
    assert [c["label"] for c in m["classes"]] == list(range(300))
    assert m["num_images"] == 600 and m["subset"] == "NA" and m["k"] == 300 and m["seed"] == 0
    assert m["classes"][0]["name"] and m["version"]
    _, labels = read_all(out)
    assert sorted(set(labels.tolist())) == list(range(300))
    # The same (subset, k, seed) gives the same classes for val.
    r = run(
        [
            "--data-dir",
            imagenet_dir,
            "--split",
            "val",
            "--subset",
            "NA",
            "--k",
            300,
            "--out",
            tmp_path / "na300_val.beton",
            "--workers",
            2,
        ]
    )
    assert r.exit_code == 0, r.output
    assert [c.id for c in read_manifest(tmp_path / "na300_val.beton").classes] == wnids


@pytest.mark.timeout(180)
def test_odd_files_converted_and_broken_skipped(imagenet_dir, tmp_path):
    out = tmp_path / "a.beton"
    r = run(["--data-dir", imagenet_dir, "--subset", "A", "--out", out, "--workers", 2, "--max-res", 32])
    assert r.exit_code == 0, r.output
    m = read_manifest(out)
    reasons = {Path(s["path"]).name: s["reason"] for s in m.skipped}
    assert set(reasons) == {"odd_truncated.JPEG", "odd_empty.JPEG", "odd_not_an_image.JPEG"}
    assert "truncated" in reasons["odd_truncated.JPEG"] and "empty" in reasons["odd_empty.JPEG"]
    assert all(s["path"].startswith("train/n01440764/") for s in m.skipped)
    # Class 0 keeps its 2 images plus the grayscale, CMYK and PNG-named files, as RGB.
    assert m.classes[0].num_images == 5 and m.num_images == 398 * 2 + 3
    images, labels = read_all_resized(out)
    assert images.shape[1:] == (32, 32, 3) and (labels == 0).sum() == 5


def read_all_resized(beton):
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor

    loader = Loader(
        str(beton),
        batch_size=64,
        num_workers=1,
        order=OrderOption.SEQUENTIAL,
        drop_last=False,
        pipelines={"image": [CenterCropRGBImageDecoder((32, 32), 1.0)], "label": [IntDecoder(), ToTensor()]},
    )
    xs, ys = zip(*[(np.array(x, copy=True), y.numpy().reshape(-1).copy()) for x, y in loader])
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.timeout(120)
def test_on_error_fail_names_the_file_and_writes_nothing(imagenet_dir, tmp_path):
    out = tmp_path / "a.beton"
    r = run(["--data-dir", imagenet_dir, "--subset", "A", "--out", out, "--on-error", "fail", "--workers", 2])
    assert r.exit_code != 0
    assert "odd_" in r.output and "n01440764" in r.output
    assert "Traceback" not in r.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(180)
def test_inat_splits(inat_dir, tmp_path):
    manifests = {}
    for split in ("train", "eval", "val"):
        out = tmp_path / f"inat_{split}.beton"
        r = run(
            [
                "--dataset",
                "inat-mini-a",
                "--data-dir",
                inat_dir,
                "--split",
                split,
                "--per-class",
                4,
                "--out",
                out,
                "--workers",
                2,
            ]
        )
        assert r.exit_code == 0, r.output
        manifests[split] = read_manifest(out)
    ids = [[c.id for c in m.classes] for m in manifests.values()]
    assert ids[0] == ids[1] == ids[2]
    n = len(ids[0])
    assert manifests["eval"].num_images == 4 * n
    assert manifests["val"].num_images == 2 * n
    # The truncated train_mini image of species 0 is skipped; the grayscale one kept.
    assert manifests["train"].num_images == 3 * n - 1 and len(manifests["train"].skipped) == 1
    assert manifests["train"].classes[0].supercategory


@pytest.mark.timeout(60)
def test_existing_out_refused_unless_overwrite(imagenet_dir, tmp_path, monkeypatch):
    out = tmp_path / "x.beton"
    out.write_text("precious")
    monkeypatch.setenv("IMAGENET_DIR", str(imagenet_dir))  # --data-dir defaults to it
    r = run(["--subset", "R", "--k", "2", "--out", out])
    assert r.exit_code != 0 and "exists" in r.output and "--overwrite" in r.output
    assert out.read_text() == "precious"
    r = run(["--subset", "R", "--k", "2", "--out", out, "--overwrite", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert read_manifest(out).num_classes == 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args,message",
    [
        (["--data-dir", "/nonexistent/imagenet"], "ImageNet data dir not found: /nonexistent/imagenet"),
        (["--subset", "B"], "unknown subset 'B'"),
        (["--subset", "R"], "subset R needs --k"),
        (["--subset", "A", "--k", "400"], "--k 400 is larger than subset A, which has 398 classes"),
        (["--subset", "A"], "class folder missing"),
        (["--split", "eval"], "split eval exists only for --dataset inat-mini-a"),
        (["--dataset", "inat-mini-a"], "iNat annotation file not found"),
        (["--write-mode", "smart"], "Invalid value for '--write-mode'"),
        (["--jpeg-quality", "0"], "--jpeg-quality must be in 1..100"),
    ],
)
def test_cli_errors_are_one_line(small_imagenet, tmp_path, args, message):
    if "--data-dir" not in args:
        args = ["--data-dir", small_imagenet] + args
    r = run(args + ["--out", tmp_path / "x.beton"])
    assert r.exit_code != 0
    assert message in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "x.beton").exists()


@pytest.mark.timeout(120)
def test_subset_and_k_alone_just_work(imagenet_dir, tmp_path, monkeypatch):
    """`write-beton --subset NA --k 300` with $IMAGENET_DIR set: data dir and --out by default."""
    monkeypatch.setenv("IMAGENET_DIR", str(imagenet_dir))
    monkeypatch.chdir(tmp_path)
    r = run(["--subset", "NA", "--k", "300"])
    assert r.exit_code == 0, r.output
    m = read_manifest(tmp_path / "imagenet_NA-300_s0_train.beton")
    assert [c.id for c in m.classes] == select_classes("NA", 300, 0)


@pytest.mark.timeout(60)
def test_empty_class_folder_and_missing_env(tmp_path, monkeypatch):
    tree = make_imagenet(tmp_path / "d", train_per_class=1, val_per_class=0, size=16, wnids=WNIDS_A3)
    for f in (tree / "train" / WNIDS_A3[1]).iterdir():
        f.unlink()
    from ffcv_inat import UserError
    from ffcv_inat.writers.imagenet import list_class_images

    with pytest.raises(UserError, match=f"class folder is empty: .*{WNIDS_A3[1]}"):
        list_class_images(tree, "train", WNIDS_A3)
    monkeypatch.delenv("IMAGENET_DIR", raising=False)
    r = run(["--subset", "A", "--out", tmp_path / "x.beton"])
    assert r.exit_code != 0 and "set $IMAGENET_DIR" in r.output


@pytest.fixture(scope="module")
def slow_imagenet(tmp_path_factory):
    """Enough large-ish images that a one-worker write takes seconds (600 raw images of 160 px:
    ~4 s on 2 cores; the signal comes within ~20 ms of the write's start)."""
    return make_imagenet(
        tmp_path_factory.mktemp("slow"), train_per_class=200, val_per_class=0, size=160, wnids=WNIDS_A3
    )


@pytest.mark.timeout(240)
def test_interrupted_write_leaves_nothing_at_out(slow_imagenet, tmp_path):
    # One writer per signal, all started at once (each pays ~5-8 s of imports here), each
    # interrupted once its DatasetWriter has started.
    script = (
        "import sys; from ffcv_inat.writers.beton import write_beton, BetonContents, WriteOptions, ClassInfo;"
        "from ffcv_inat.writers.imagenet import list_class_images;"
        f"w={WNIDS_A3!r}; s=list_class_images(sys.argv[1], 'train', w);"
        "write_beton(sys.argv[2], s, [ClassInfo(x, x, None) for x in w], BetonContents('imagenet', 'train', 'A'),"
        "WriteOptions(workers=1, write_mode='raw', chunksize=10))"
    )
    runs = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        folder = tmp_path / sig.name
        folder.mkdir()
        runs[sig] = (
            folder,
            subprocess.Popen(
                [sys.executable, "-c", script, str(slow_imagenet), str(folder / "out.beton")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                # A shell's background jobs ignore SIGINT; a user's Ctrl-C does not.
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                start_new_session=True,
            ),
        )  # its own process group: its workers are stopped by its id
    deadline, waiting = time.time() + 120, set(runs)
    while waiting:  # each signalled as soon as its DatasetWriter has started
        for sig in list(waiting):
            folder, proc = runs[sig]
            assert proc.poll() is None, proc.stderr.read().decode()
            if list(folder.glob(".out.beton.*.tmp")):
                os.kill(proc.pid, sig)
                waiting.discard(sig)
        assert time.time() < deadline
        time.sleep(0.02)
    for sig, (folder, proc) in runs.items():
        proc.wait(timeout=60)
        out = folder / "out.beton"
        assert proc.returncode != 0, (sig, proc.stderr.read().decode()[-3000:])
        assert not out.exists() and not out.with_suffix(".json").exists()
        if sig == signal.SIGKILL:
            # kill -9 runs no cleanup: a hidden temporary may stay, never a file at --out; the
            # next write to the same --out removes it. (Stop ffcv's orphaned workers first: by the
            # group's id, never by name, which would also hit another test run's writers.)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            from ffcv_inat.atomic import remove_stale_temps

            remove_stale_temps(out)
        assert list(folder.iterdir()) == [], sig


@pytest.fixture(scope="module")
def imagenet_128px(tmp_path_factory):
    """60 images of 128 px in the 3 classes `--subset A --k 3` draws: 49 kB each stored raw."""
    return make_imagenet(
        tmp_path_factory.mktemp("in128"), train_per_class=20, val_per_class=1, size=128, wnids=select_classes("A", 3, 0)
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["raw", "jpg"])
def test_size_estimate_is_close_to_the_written_beton(imagenet_128px, tmp_path, mode):
    from ffcv_inat.writers.beton import WriteOptions, _ffcv_fields, page_size_for
    from ffcv_inat.writers.beton_size import estimate_beton_bytes
    from ffcv_inat.writers.imagenet import list_class_images

    out = tmp_path / "x.beton"
    assert (
        run(
            [
                "--data-dir",
                imagenet_128px,
                "--subset",
                "A",
                "--k",
                3,
                "--out",
                out,
                "--max-res",
                128,
                "--write-mode",
                mode,
                "--workers",
                1,
            ]
        ).exit_code
        == 0
    )
    opts = WriteOptions(max_res=128, write_mode=mode, workers=1)
    paths = [p for p, _ in list_class_images(imagenet_128px, "train", select_classes("A", 3, 0))]
    estimate = estimate_beton_bytes(paths, opts, _ffcv_fields(opts), page_size_for(len(paths), 128))
    assert estimate.sampled == 32 and estimate.num_images == 60
    assert abs(estimate.num_bytes - out.stat().st_size) / out.stat().st_size < 0.1


@pytest.mark.timeout(120)
def test_full_disk_is_refused_up_front_or_one_line_and_keeps_the_old_beton(imagenet_128px, small_disk):
    """An 8 MB filesystem holding a 4.2 MB beton: writing a 6.3 MB one over it (beside it until
    the rename) is refused with the estimate; forced, the write fails as one line, leaving the
    small beton and its manifest as they were."""
    disk = small_disk(8)
    out = disk.path / "x.beton"
    args = [
        "--data-dir",
        imagenet_128px,
        "--subset",
        "A",
        "--k",
        3,
        "--out",
        out,
        "--write-mode",
        "raw",
        "--workers",
        1,
    ]
    assert run([*args, "--max-res", 32]).exit_code == 0
    before = {p.name: p.read_bytes() for p in disk.path.iterdir()}
    assert sorted(before) == ["x.beton", "x.json"]

    r = run([*args, "--max-res", 128, "--overwrite"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1].startswith(f"Error: {out}: not enough room (needs ≈ 6.3 MB: ")
    assert "60 images at ≈ 49 kB each (a sample of 32)" in r.output and "--no-space-check" in r.output

    r = run([*args, "--max-res", 128, "--overwrite", "--no-space-check"])
    assert r.exit_code == 1
    line = r.output[r.output.index("Error: ") :].strip()  # after ffcv's progress bar, which ends in \r
    assert line.startswith(f"Error: {out}: disk full (needs ≈ 6.3 MB, ") and line.endswith(f"free on {disk.path})")
    assert "Traceback" not in r.output
    assert {p.name: p.read_bytes() for p in disk.path.iterdir()} == before


@pytest.mark.timeout(180)
def test_inat_eval_stops_at_a_missing_image_unless_asked_to_skip(inat_dir, tmp_path):
    import shutil

    from ffcv_inat.inat import image_key

    data = tmp_path / "inat"
    shutil.copytree(inat_dir, data, ignore=shutil.ignore_patterns("val"))
    mini = {image_key(i["file_name"]) for i in json.loads((data / "train_mini.json").read_text())["images"]}
    gone = next(
        p
        for p in sorted((data / "train").rglob("*.jpg"))
        if image_key(f"train/{p.relative_to(data / 'train')}") not in mini
    )
    gone.unlink()  # an evaluation candidate, as in a half-extracted train/
    args = ["--dataset", "inat-mini-a", "--data-dir", data, "--split", "eval", "--per-class", 5, "--workers", 1]
    r = run([*args, "--out", tmp_path / "eval.beton"])
    assert r.exit_code == 1 and f"cannot read {gone}" in r.output and "--on-error skip" in r.output, r.output
    assert not (tmp_path / "eval.beton").exists()
    r = run([*args, "--out", tmp_path / "eval.beton", "--on-error", "skip"])
    assert r.exit_code == 0 and "skipped 1" in r.output, r.output


@pytest.mark.timeout(60)
def test_an_abandoned_writers_queues_do_not_block_the_exit():
    """A Ctrl-C that lands in multiprocessing's Queue.put just after it took the queue's lock
    leaves the lock taken (seen: an interrupted write-beton hung at exit in Queue._finalize_close).
    Made here by hand in a child process: inside abandon_queues_on_failure, as ffcv's writer runs
    in write_beton, the process exits; without it, it hangs."""
    script = (
        "import multiprocessing, sys\n"
        "from ffcv_inat.atomic import abandon_queues_on_failure\n"
        "def write():\n"
        "    q = multiprocessing.Queue(); q.put('work')  # starts its feeder thread\n"
        "    q._notempty.acquire()  # the lock the signal left taken\n"
        "    raise KeyboardInterrupt\n"
        "try:\n"
        "    if sys.argv[1] == 'guarded':\n"
        "        with abandon_queues_on_failure():\n"
        "            write()\n"
        "    else:\n"
        "        write()\n"
        "except KeyboardInterrupt:\n"
        "    pass\n"
    )
    guarded = subprocess.run([sys.executable, "-c", script, "guarded"], timeout=30, capture_output=True)
    assert guarded.returncode == 0, guarded.stderr.decode()
    with pytest.raises(subprocess.TimeoutExpired):  # the hang it prevents
        subprocess.run([sys.executable, "-c", script, "bare"], timeout=5, capture_output=True)
