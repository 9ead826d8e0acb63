"""`ffcv-bench model` on the CPU with a tiny ResNet-50 step, and the epoch bench's figures from a
trainer's log, pinned: what each row holds (`ModelRow`, `EpochRow`) and how it reads back."""

import json

import pytest
from click.testing import CliRunner

from ffcv_inat.bench.cli import main
from ffcv_inat.bench.results import from_record, read_results, read_rows, to_record
from ffcv_inat.bench.stats import Verdict
from ffcv_inat.bench.throughput.epoch import EpochRow, TrainerSettings, summarize_log
from ffcv_inat.bench.throughput.model import ModelRow
from helpers.errors import assert_one_line_error


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.timeout(180)
def test_model_times_the_trainers_step_and_writes_its_row(tmp_path):
    out = tmp_path / "r.csv"
    r = invoke(
        "model", "--res", "32,64", "--batch", 2, "--steps", 2, "--warmup", 1, "--device", "cpu", "--results", out
    )
    assert r.exit_code == 0, r.output
    rows = read_rows(read_results(out), ModelRow)
    assert [(m.res, m.batch, m.precision, m.device, m.runs, m.measured_steps, m.warmup_steps) for m in rows] == [
        (32, 2, "fp32", "cpu", 2, 2, 1),
        (64, 2, "fp32", "cpu", 2, 2, 1),
    ]
    for m in rows:
        assert m.images_per_second_min <= m.images_per_second <= m.images_per_second_max
        assert m.channels_last is True and m.compile is False and m.blurpool is None
        assert m.memory_kind and m.peak_memory_mb > 0
    settings = json.loads(read_results(out)["settings"][0])
    assert settings == {"device": "cpu", "warmup_steps": 1, "measured_steps": 2}  # blurpool only when on
    assert "ffcv-bench model --res 32,64 --batch 2" in read_results(out)["command"][0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--res", 16], "--res must be at least 32"),
        (["--steps", 0], "--steps must be at least 1"),
        (["--compile", "--warmup", 0], "--compile needs --warmup of at least 1"),
    ],
)
def test_model_bad_input_is_one_line(tmp_path, args, fragment):
    out = tmp_path / "r.csv"
    assert_one_line_error(invoke("model", "--device", "cpu", *args, "--results", out), fragment)
    assert not out.exists()


SETTINGS = TrainerSettings("pretrain_90ep.yaml", "cpu", 8, 32, 2, "fp32", True, False, 4, 100, False)


def test_epoch_figures_skip_the_warmup_and_extrapolate_a_cut_epoch():
    # 100 images in batches of 8: 12 steps an epoch; 3 of them run per epoch, 2 epochs measured
    log = [
        {"train_images_per_second": 10.0, "epoch_seconds": 9.0, "steps": 3, "res": 32},
        {"train_images_per_second": 48.0, "epoch_seconds": 0.5, "steps": 3, "res": 32},
        {"train_images_per_second": 24.0, "epoch_seconds": 1.0, "steps": 3, "res": 32},
    ]
    r = summarize_log(log, SETTINGS, warmup=1, max_steps=3)
    assert r.images_per_second.median == 36.0 and r.images_per_second.n == 2
    assert r.extrapolated and r.steps_measured == 3 and r.epoch_seconds == 96 / 36.0  # 12 steps x 8 at 36/s
    with pytest.raises(Exception, match="none after the 3 warm-up ones"):
        summarize_log(log, SETTINGS, warmup=3, max_steps=3)


def test_an_epoch_row_holds_the_run_and_reads_back(tmp_path):
    log = [{"train_images_per_second": 40.0, "epoch_seconds": 2.4, "steps": 12, "res": 32}]
    r = summarize_log(log, SETTINGS, warmup=0, max_steps=None)
    verdict = Verdict("data", 12.5, "data loading limits you by 12%")
    r = type(r)(**{**r.__dict__, "loader_only": 35.0, "model_only": 45.0, "verdict": verdict})
    row = EpochRow.of(r, str(tmp_path / "A.beton"))
    assert not row.extrapolated and row.epoch_seconds == 2.4 and row.ms_per_step == 200.0
    assert (row.limit, row.percent_lost, row.verdict) == ("data", 12.5, "data loading limits you by 12%")
    record = to_record(row, "ffcv-bench epoch --recipe pretrain_90ep.yaml")
    assert record["bench"] == "epoch" and record["pipeline"] == "trainer" and record["verdict"] == verdict.text
    settings = json.loads(record["settings"])
    assert settings["train"] == "A.beton"  # outside the working directory: only its name
    assert "loader_only_decode_counts" not in settings and "nvjpeg_backend" not in settings  # None: not written
    assert from_record(EpochRow, record) == row
