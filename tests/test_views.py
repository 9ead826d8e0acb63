"""Views (`write-beton --from PARENT --out NAME.view.json`): a class subset of one ImageNet beton
read where a beton is read, against standalone betons of the same classes written by the same
writer (real ffcv, real ResNet-50, the session's synthetic ImageNet of all 1,000 classes)."""

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ffcv_inat import UserError
from ffcv_inat.beton import check_beton, index_ranges, range_indices
from ffcv_inat.classes import select_classes
from ffcv_inat.loader import make_loader
from ffcv_inat.writers.beton import WriteOptions
from ffcv_inat.writers.cli import main as write_beton
from ffcv_inat.writers.imagenet import write_imagenet
from helpers.errors import assert_one_line_error

CPU = torch.device("cpu")
OPTS = WriteOptions(max_res=32, workers=2)


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


@pytest.fixture(scope="module")
def betons(imagenet_dir, tmp_path_factory):
    """The parents (all 1,000 classes, train and val), views of A-4 (seed 0) of both, and the
    standalone A-4 betons."""
    root = tmp_path_factory.mktemp("views")
    out = {}
    for split in ("train", "val"):
        parent = root / "parents" / f"all_{split}.beton"
        parent.parent.mkdir(exist_ok=True)
        write_imagenet(imagenet_dir, split, "all", None, 0, parent, OPTS)
        view = root / f"A-4_{split}.view.json"
        r = invoke(write_beton, "--subset", "A", "--k", 4, "--from", parent, "--out", view)
        assert r.exit_code == 0, r.output
        assert f"wrote {view}: view of {parent}, ImageNet A-4 {split}, 4 classes" in r.output
        standalone = root / f"A-4_{split}.beton"
        write_imagenet(imagenet_dir, split, "A", 4, 0, standalone, OPTS)
        out[split] = {"parent": parent, "view": view, "standalone": standalone}
    return out


def test_a_view_holds_the_subsets_classes_in_order_and_names_its_parent(betons):
    view, parent = betons["train"]["view"], betons["train"]["parent"]
    m, standalone = check_beton(view), check_beton(betons["train"]["standalone"])
    assert [c.id for c in m.classes] == select_classes("A", 4, 0) == [c.id for c in standalone.classes]
    assert [c.num_images for c in m.classes] == [c.num_images for c in standalone.classes]
    assert (m.subset, m.k, m.seed, m.split, m.num_images) == ("A", 4, 0, "train", standalone.num_images)
    assert m.view.parent == "parents/all_train.beton"  # relative: the two move together
    assert m.view.integrity == check_beton(parent).integrity
    parent_labels = {c.id: c.label for c in check_beton(parent).classes}
    assert m.view.parent_labels == [parent_labels[c.id] for c in m.classes]
    assert m.integrity is None and json.loads(view.read_text())["view"]["indices"] == m.view.indices


def test_index_ranges_round_trip_and_are_checked():
    idx = np.array([0, 1, 2, 5, 6, 9])
    assert index_ranges(idx) == [[0, 3], [5, 7], [9, 10]]
    assert range_indices([[0, 3], [5, 7], [9, 10]], 10).tolist() == idx.tolist()
    with pytest.raises(ValueError, match="repeat or are out of order"):
        range_indices([[0, 3], [2, 4]], 10)
    with pytest.raises(ValueError, match="outside the parent's 10 samples"):
        range_indices([[8, 11]], 10)


@pytest.mark.timeout(120)
def test_a_view_loads_the_same_images_and_labels_as_a_standalone_beton(betons):
    def epoch(path, **kw):
        loader = make_loader(path, batch_size=2, res=32, device=CPU, workers=1, drop_last=False, **kw)
        with loader.start_epoch() as it:
            return [(x.clone(), y.clone()) for x, y in it]

    for split in ("train", "val"):
        view, standalone = epoch(betons[split]["view"], train=False), epoch(betons[split]["standalone"], train=False)
        assert len(view) == len(standalone)
        for (xv, yv), (xs, ys) in zip(view, standalone):
            assert torch.equal(xv, xs) and torch.equal(yv, ys)
    # training: labels 0..k-1, and the same seed gives the same batches (crops of the parent's indices)
    a, b = (epoch(betons["train"]["view"], train=True, seed=3) for _ in range(2))
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert sorted(torch.cat([y for _, y in a]).tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.timeout(300)
def test_training_and_evaluation_take_a_view_as_a_beton(betons, tmp_path):
    from torchvision.models import resnet50

    from ffcv_inat.training.cli import main as ffcv_train

    checkpoint = tmp_path / "random.pt"
    torch.manual_seed(0)
    torch.save(resnet50(num_classes=4).state_dict(), checkpoint)
    results = {}
    for kind in ("view", "standalone"):
        out = tmp_path / f"eval_{kind}"
        r = invoke(
            ffcv_train,
            "eval",
            "--checkpoint",
            checkpoint,
            "--val",
            betons["val"][kind],
            "--out",
            out,
            "--batch-size",
            3,
            "--workers",
            1,
        )
        assert r.exit_code == 0, r.output
        results[kind] = ((out / "per_class.csv").read_text(), json.loads((out / "summary.json").read_text()))
    assert results["view"][0] == results["standalone"][0]  # the same images, per class
    assert results["view"][1]["eval_images"] == results["standalone"][1]["eval_images"] == 4
    run = tmp_path / "run"
    r = invoke(
        ffcv_train,
        "--recipe",
        "smoke_cpu.yaml",
        "--train",
        betons["train"]["view"],
        "--val",
        betons["val"]["view"],
        "--out",
        run,
        "--set",
        "data.batch_size=4",
        "--set",
        "schedule.epochs=1",
        "--set",
        "data.workers=1",
    )
    assert r.exit_code == 0, r.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["num_classes"] == 4 and summary["eval_images"] == 4
    with open(run / "per_class.csv", newline="") as f:
        assert [row["id"] for row in csv.DictReader(f)] == select_classes("A", 4, 0)


def _edited_view(betons, tmp_path, edit):
    """A copy of the train view naming its parent by absolute path, its JSON changed by `edit`."""
    view = tmp_path / "v.view.json"
    d = json.loads(betons["train"]["view"].read_text())
    d["view"]["parent"] = str(betons["train"]["parent"])
    edit(d)
    view.write_text(json.dumps(d))
    return view


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda d: d["view"]["indices"].append(d["view"]["indices"][-1]), "repeat or are out of order"),
        (lambda d: d["view"]["indices"].append([5000, 5001]), "outside the parent's"),
        (lambda d: d["view"].update(parent="missing.beton"), "its parent beton"),
        (lambda d: d["view"]["integrity"].update(sha256="0" * 64), "was rewritten or replaced since: sha256"),
        (lambda d: d["classes"][0].update(num_images=9), "the view says 9"),
    ],
)
def test_a_broken_view_is_one_line(betons, tmp_path, edit, fragment):
    view = _edited_view(betons, tmp_path, edit)
    with pytest.raises(UserError, match=fragment) as e:
        check_beton(view)
    assert "\n" not in str(e.value) and str(view) in str(e.value)
    from ffcv_inat.training.cli import main as ffcv_train

    r = invoke(ffcv_train, "--recipe", "smoke_cpu.yaml", "--train", view, "--out", tmp_path / "run")
    assert_one_line_error(r, fragment)


def test_write_beton_from_a_parent_one_line_errors_and_verify(betons, tmp_path, imagenet_dir):
    a4_val = tmp_path / "A-4_val.beton"  # a parent without NA's classes
    write_imagenet(imagenet_dir, "val", "A", 4, 0, a4_val, OPTS)
    r = invoke(write_beton, "--subset", "NA", "--k", 3, "--from", a4_val, "--out", tmp_path / "x.view.json")
    assert_one_line_error(r, f"{a4_val} lacks class {select_classes('NA', 3, 0)[0]} and 2 more of NA")
    r = invoke(write_beton, "--subset", "A", "--from", a4_val, "--out", tmp_path / "x.beton")
    assert_one_line_error(r, "must end in .view.json")
    r = invoke(
        write_beton, "--subset", "A", "--k", 4, "--from", betons["val"]["view"], "--out", tmp_path / "y.view.json"
    )
    assert_one_line_error(r, "a view's parent must be a beton")
    assert not list(tmp_path.glob("*.view.json"))
    r = invoke(write_beton, "--verify", betons["val"]["view"])
    assert r.exit_code == 0 and r.output.startswith(f"OK {betons['val']['view']}: 4 images, 4 classes"), r.output


def test_loaders_take_ffcvs_os_cache_manager_without_its_eager_tables(betons):
    import ffcv.loader.loader as ffcv_loader_module
    from ffcv.memory_managers import OSCacheManager
    from ffcv.reader import Reader

    from ffcv_inat.loader import LeanOSCacheManager

    reader = Reader(str(betons["train"]["parent"]))
    ffcv, lean = OSCacheManager(reader), LeanOSCacheManager(reader)
    assert not {"ptr_to_size", "_page_tables"} & set(vars(lean))  # nothing built that the OS cache does not read
    assert np.array_equal(lean.ptrs, ffcv.ptrs) and np.array_equal(lean.sizes, ffcv.sizes)
    assert lean.ptrs.dtype == ffcv.ptrs.dtype and lean.ptrs.flags.c_contiguous and lean.sizes.flags.c_contiguous
    # ... and built as ffcv builds them when asked (ffcv's QUASI_RANDOM order reads them)
    assert lean.ptr_to_size == ffcv.ptr_to_size
    assert lean.sample_to_pages == ffcv.sample_to_pages and lean.page_to_samples == ffcv.page_to_samples

    loader = make_loader(
        betons["train"]["view"], batch_size=4, res=16, train=True, device=torch.device("cpu"), workers=1
    )
    assert type(loader.loader.memory_manager) is LeanOSCacheManager
    assert ffcv_loader_module.OSCacheManager is OSCacheManager  # ffcv's own again once the loader is made
