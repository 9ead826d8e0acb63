"""`ffcv-bench loader --crop`: both training crop decoders timed in one run, rows that say which."""

import csv
import json

import pytest
from click.testing import CliRunner

from ffcv_inat.bench.cli import main
from ffcv_inat.classes import imagenet_classes
from ffcv_inat.synthetic import make_imagenet


@pytest.mark.timeout(120)
def test_loader_times_both_crop_decoders(tmp_path):
    make_imagenet(
        tmp_path / "imagenet",
        train_per_class=4,
        val_per_class=0,
        size=40,
        wnids=[c.wnid for c in imagenet_classes()[:2]],
    )
    out = tmp_path / "r.csv"
    r = CliRunner().invoke(
        main,
        [
            str(a)
            for a in (
                "loader",
                "--images",
                tmp_path / "imagenet" / "train",
                "--res",
                32,
                "--batch",
                4,
                "--workers",
                1,
                "--epochs",
                1,
                "--warmup",
                0,
                "--min-seconds",
                0,
                "--no-ceiling",
                "--pipeline",
                "ffcv",
                "--crop",
                "seeded",
                "--crop",
                "ffcv",
                "--results",
                out,
            )
        ],
    )
    assert r.exit_code == 0, r.output
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(row["pipeline"], json.loads(row["settings"])["crop"]) for row in rows] == [
        ("ffcv", "seeded"),
        ("ffcv", "ffcv"),
    ]
    assert all(row["ratio"] == "" and json.loads(row["settings"])["batch_shape"] == [4, 3, 32, 32] for row in rows)
    assert "--crop seeded --crop ffcv" in rows[0]["command"]
    assert "ffcv crop decoders" in r.output and "res 32: seeded " in r.output and "seeded / ffcv = " in r.output
