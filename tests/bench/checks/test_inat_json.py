"""`ffcv-bench inat-json`: a synthetic train.json in iNat-2021's schema, read both ways."""

import json

import pytest
from click.testing import CliRunner

from ffcv_inat.bench.checks.inat_json import write_train_json
from ffcv_inat.bench.cli import main
from ffcv_inat.inat import load_json


def test_the_synthetic_file_has_inat_2021s_schema_and_reads_both_ways(tmp_path):
    path = tmp_path / "train.json"
    write_train_json(path, images=30, categories=4)
    data = json.loads(path.read_text())
    assert set(data) == {"info", "images", "annotations", "categories", "licenses"}
    assert {"id", "file_name", "width", "height", "rights_holder", "date", "latitude"} <= set(data["images"][0])
    assert {"kingdom", "phylum", "class", "order", "family", "genus", "specific_epithet"} <= set(data["categories"][0])
    assert data["images"][5]["file_name"].startswith(f"train/{data['categories'][1]['image_dir_name']}/")
    kept = load_json(tmp_path, "train.json")
    assert [(i.id, i.file_name) for i in kept["images"]] == [(i["id"], i["file_name"]) for i in data["images"]]


@pytest.mark.timeout(120)
def test_inat_json_prints_each_readers_peak_memory_and_removes_the_file(tmp_path):
    r = CliRunner().invoke(
        main, ["inat-json", str(tmp_path), "--images", "500", "--categories", "10", "--repeats", "1"]
    )
    assert r.exit_code == 0, r.output
    assert "500 images, 10 categories" in r.output
    assert r.output.count("peak RSS") == 2 and "json.load, every key" in r.output and "(500 images)" in r.output
    assert not (tmp_path / "train.json").exists()
