"""`ffcv-bench write-speed`: write_beton with source JPEGs stored as they come against re-encoded."""

import pytest
from click.testing import CliRunner
from PIL import Image

from ffcv_inat.bench.cli import main


@pytest.mark.timeout(180)
def test_write_speed_times_both_ways_and_counts_what_passed_through(tmp_path):
    images = tmp_path / "images"
    for c in ("a", "b"):
        (images / c).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (40 + i, 30), (60 * i, 90, 30)).save(images / c / f"{i}.jpg", quality=95)
    Image.new("RGB", (80, 60)).save(images / "a" / "big.jpg")  # beyond --max-res 64: re-encoded
    r = CliRunner().invoke(
        main, ["write-speed", "--images", str(images), "--rounds", "1", "--workers", "1", "--max-res", "64"]
    )
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[-3].startswith("as they come ") and "of 9 images, 8 stored as they came" in lines[-3]
    assert lines[-2].startswith("re-encoded ") and "0 stored as they came" in lines[-2]
    assert lines[-1].startswith("as they come / re-encoded: ")
