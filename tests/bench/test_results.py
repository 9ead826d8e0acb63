"""The shared results module: rows as dataclasses to CSV and back, older rows read with
defaults, the default results file of the working directory."""

import json
from dataclasses import dataclass

import pandas as pd

from ffcv_inat.bench.machine import environment
from ffcv_inat.bench.results import (
    RESULTS_ENV,
    ResultRow,
    append_rows,
    default_results,
    from_record,
    read_results,
    read_rows,
    to_record,
)
from ffcv_inat.bench.throughput.loader import LoaderRow


@dataclass(frozen=True)
class Row(ResultRow):
    BENCH = "model"
    res: int
    images_per_second: float
    device: str
    note: str | None = None
    pipeline: str = "model"


def test_columns_and_settings_split_by_name_and_none_is_not_written(tmp_path):
    record = to_record(Row(224, 1234.5, "cpu"), "ffcv-bench model", env=environment())
    assert (record["bench"], record["pipeline"], record["res"], record["images_per_second"]) == (
        "model",
        "model",
        224,
        1234.5,
    )
    assert json.loads(record["settings"]) == {"device": "cpu"}
    path = append_rows(tmp_path / "r.csv", [record, to_record(Row(160, 99.0, "cuda", "x"), "c", env=environment())])
    assert read_rows(read_results(path), Row) == [Row(224, 1234.5, "cpu"), Row(160, 99.0, "cuda", "x")]


def test_an_older_row_without_newer_fields_reads_with_defaults():
    old = {
        "bench": "loader",
        "pipeline": "pytorch",
        "res": 224.0,
        "batch": 256,
        "workers": 2,
        "images_per_second": 670.0,
        "images_per_second_min": 600.0,
        "images_per_second_max": 700.0,
        "runs": 3,
        "ratio": float("nan"),
        "settings": json.dumps(
            {
                "images": "imagen",
                "num_images": 1000,
                "num_classes": 10,
                "beton": None,
                "images_label": "real photos",
                "measured_rounds": 3,
                "min_round_seconds": 4.0,
                "images_per_epoch": 768,
                "warmup_rounds": 1,
                "batch_shape": [256, 3, 224, 224],
                "device": "cpu",
            }
        ),
    }
    row = from_record(LoaderRow, pd.Series(old))
    assert row.pipeline == "pytorch" and row.res == 224 and row.ratio is None and row.memory_added_mb is None
    assert row.crop is None and row.ceiling is None and row.images_label == "real photos"


def test_the_default_results_file_is_the_working_directorys(tmp_path, monkeypatch):
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_results() == tmp_path / "bench" / "results" / "results.csv"
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "mine.csv"))
    assert default_results() == tmp_path / "mine.csv"
