"""`ffcv-bench prepare synthetic`: the synthetic ImageNet-like images and their beton that
bench/gpu/device_run.sh's data step makes, on CPU with tiny sizes."""

import pytest
from click.testing import CliRunner

from ffcv_inat.bench.cli import main
from ffcv_inat.bench.data.synthetic_beton import synthetic_paths
from ffcv_inat.beton import read_manifest


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.timeout(120)
def test_synthetic_beton_makes_the_images_and_their_beton(tmp_path):
    out = tmp_path / "work"
    r = invoke("prepare", "synthetic", out, "--classes", 3, "--per-class", 2, "--size", 32, "--seed", 1)
    assert r.exit_code == 0, r.output
    images, beton = synthetic_paths(out)
    assert images == out / "imagenet" / "train" and beton == out / "train.beton"
    folders = sorted(p.name for p in images.iterdir())
    assert len(folders) == 3 and all(f.startswith("n") for f in folders)  # real wnids
    assert all(len(list((images / f).iterdir())) == 2 for f in folders)
    m = read_manifest(beton)
    assert m.num_images == 6 and m.num_classes == 3 and m.dataset == "imagenet"
    assert "made 6 images of 32x32 px" in r.output and "6 images, 3 classes" in r.output
    # made once: a second call refuses rather than mixing two sets of images
    r = invoke("prepare", "synthetic", out, "--classes", 3, "--per-class", 2, "--size", 32)
    assert r.exit_code == 1 and "exists: remove it" in r.output


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--classes", 0, "--classes must be at least 1"),
        ("--size", 8, "--size must be at least 16"),
    ],
)
def test_synthetic_beton_bad_sizes(tmp_path, option, value, message):
    r = invoke("prepare", "synthetic", tmp_path / "w", option, value)
    assert r.exit_code == 1 and message in r.output
    assert not (tmp_path / "w").exists()
