"""The bench suite's arithmetic and results rows, pinned on given numbers (no timing involved)."""

import csv
from pathlib import Path
import json

import pytest

from ffcv_inat import UserError
from ffcv_inat.bench.cost.recipe import hours_on_device
from ffcv_inat.bench.results import recorded_path
from ffcv_inat.bench.machine import card_name, environment
from ffcv_inat.bench.results import COLUMNS, append_rows, make_row
from ffcv_inat.bench.stats import (
    bottleneck_verdict,
    extrapolate_epoch_seconds,
    predict_cost,
    ratio,
    spread,
    steps_per_epoch,
    throughput,
)

pytestmark = pytest.mark.timeout(60)


def test_spread_is_median_min_max():
    s = spread([30.0, 10.0, 20.0, 1000.0])
    assert (s.median, s.min, s.max, s.n) == (25.0, 10.0, 1000.0, 4)
    assert spread([7.0]).median == 7.0
    with pytest.raises(ValueError):
        spread([])


def test_ratio_and_throughput():
    assert ratio(3000.0, 750.0) == 4.0
    assert throughput(512, 0.25) == 2048.0
    with pytest.raises(ValueError):
        ratio(1.0, 0.0)
    with pytest.raises(ValueError):
        throughput(10, 0.0)


def test_epoch_extrapolation_and_steps():
    # 1,281,167 ImageNet images at batch 256 drop the last partial batch: 5,004 steps.
    assert steps_per_epoch(1_281_167, 256) == 5004
    assert steps_per_epoch(1_281_167, 256, drop_last=False) == 5005
    assert extrapolate_epoch_seconds(2000.0, 5004 * 256) == pytest.approx(640.512)


def test_verdict_data_loading_limits():
    v = bottleneck_verdict(end_to_end=600.0, loader_only=650.0, model_only=1000.0)
    assert v.limit == "data"
    assert v.percent == pytest.approx(40.0)
    assert v.text.startswith("data loading limits you by 40%")


def test_verdict_gpu_is_the_limit_within_tolerance():
    v = bottleneck_verdict(end_to_end=970.0, loader_only=5000.0, model_only=1000.0)
    assert v.limit == "compute"
    assert v.percent == pytest.approx(3.0)
    assert v.text.startswith("the GPU is the limit: end to end runs at 97% of model-only speed")
    assert bottleneck_verdict(1000.0, 800.0, 1000.0, device="CPU").text.startswith("the CPU is the limit")
    # end to end faster than the model alone (noise) counts as 0% lost, not negative
    assert bottleneck_verdict(1010.0, 5000.0, 1000.0).percent == 0.0


def test_verdict_overhead_when_both_parts_are_faster():
    v = bottleneck_verdict(end_to_end=500.0, loader_only=4000.0, model_only=1000.0)
    assert v.limit == "overhead"
    assert v.percent == pytest.approx(50.0)
    assert "lose 50%" in v.text
    with pytest.raises(ValueError):
        bottleneck_verdict(0.0, 1.0, 1.0)


def test_predict_cost_of_the_paper_pretraining():
    p = predict_cost(epochs=90, images_per_epoch=1_281_167, images_per_second=3000.0)
    assert p.seconds == pytest.approx(38_435.01)
    assert p.hours == pytest.approx(10.676391667)
    assert p.device_hours == p.hours
    p8 = predict_cost(90, 1_281_167, 24_000.0, gpus=8)
    assert p8.hours == pytest.approx(1.334548958)
    assert p8.device_hours == pytest.approx(8 * 1.334548958)
    for bad in ((0, 10, 1.0, 1), (1, 10, 0.0, 1), (1, 10, 1.0, 0)):
        with pytest.raises(ValueError):
            predict_cost(*bad)


@pytest.mark.parametrize(
    "gpu, card",
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA A100-SXM4-40GB", "A100"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA RTX A6000", "RTX A6000"),
        ("NVIDIA L4", "L4"),
        ("AMD Instinct MI300X", "MI300X"),
        ("H100", "H100"),  # --machine H100
        ("none", None),
        ("cpu", None),
        ("", None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_card_name(gpu, card):
    assert card_name(gpu) == card


def test_hours_are_named_by_the_device_that_gave_the_throughput():
    p = predict_cost(90, 1_000_000, 2000.0)  # 12.5 h
    assert hours_on_device(p, "NVIDIA H100 80GB HBM3") == "12.50 hours wall, 12.50 H100-hours on 1 x H100"
    p8 = predict_cost(90, 1_000_000, 16_000.0, gpus=8)  # 1.5625 h on 8 GPUs
    assert hours_on_device(p8, "NVIDIA H200") == "1.56 hours wall, 12.50 H200-hours on 8 x H200"
    assert hours_on_device(p, "none") == "12.50 hours on this CPU"  # never "GPU-hours" for a CPU figure
    assert hours_on_device(p, "cpu") == "12.50 hours on this CPU"
    assert hours_on_device(p, None).startswith("12.50 hours wall, 12.50 device-hours on 1 device(s)")
    for gpu in ("NVIDIA H100 80GB HBM3", "none", None):
        assert "GPU-hours" not in hours_on_device(p, gpu)


def test_recorded_path_names_no_absolute_path():
    root = "/home/someone/ffcv-inat"
    assert recorded_path(f"{root}/work/imagenet/train", root) == "work/imagenet/train"
    assert recorded_path(root, root) == "."
    assert recorded_path("/tmp/bb/final/train", root) == "train"  # outside the repo: only its name
    assert recorded_path("/home/someone/ffcv-inat-old/train", root) == "train"  # a sibling is outside
    assert recorded_path("relative/train", root) == "train"
    assert recorded_path(Path.cwd() / "bench" / "results") == "bench/results"  # the default root: the working dir


def test_rows_have_environment_and_fixed_columns(tmp_path):
    env = environment()
    assert env["gpu"] == "none" and env["gpu_count"] == 0  # this test suite runs without a GPU
    assert env["ffcv"] == "1.0.2" and env["torch"] and env["torchvision"] and env["cpu_count"] >= 1
    row = make_row(
        "loader", "ffcv", "ffcv-bench loader --images X", {"a": 1}, env=env, res=160, images_per_second=1234.56789
    )
    assert list(row) == COLUMNS
    assert row["images_per_second"] == 1234.5679 and row["precision"] == "" and json.loads(row["settings"]) == {"a": 1}
    with pytest.raises(ValueError):
        make_row("loader", "ffcv", "cmd", env=env, not_a_column=1)

    path = tmp_path / "r.csv"
    append_rows(path, [row])
    append_rows(path, [row, row])
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and rows[0]["res"] == "160" and rows[2]["bench"] == "loader"
    assert path.read_text().count("timestamp,host") == 1  # one header

    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="other columns"):
        append_rows(other, [row])
    with pytest.raises(UserError, match="does not exist"):
        append_rows(tmp_path / "missing" / "r.csv", [row])


def test_crop_decoder_of_a_loader_row():
    from ffcv_inat.bench.report import crop_decoder

    assert crop_decoder({"pipeline": "pytorch", "settings": "{}"}) == "torchvision"
    assert crop_decoder({"pipeline": "ffcv", "settings": '{"crop": "seeded"}'}) == "seeded"
    assert crop_decoder({"pipeline": "ffcv", "settings": "{}"}) == "ffcv"  # rows from before the seeded decoder


def test_the_machine_is_named_from_its_facts_alone():
    from ffcv_inat.bench.machine import describe_machine, machine_label, machine_name

    def env(gpu, cpus):
        return dict(environment(), gpu=gpu, cpu_count=cpus, host="box", timestamp="2026-12-04T10:00:00+00:00")

    assert machine_label(env("NVIDIA H100 80GB HBM3", 16)) == "h100"
    assert machine_label(env("NVIDIA H200", 16)) == "h200"
    assert machine_label(env("NVIDIA GeForce RTX 4090", 8)) == "rtx-4090"
    assert machine_label(env("none", 2)) == "cpu-2core"  # as cpu-2core_2026-11-27_beton_check.txt
    assert machine_name(env("NVIDIA H200", 16)) == "NVIDIA H200"
    assert machine_name(env("none", 2)) == "box (CPU x2, no GPU)"
    assert describe_machine(env("none", 2)).startswith("box, 2 CPUs, GPU none; torch ")
    assert describe_machine(env("none", 2)).endswith("; 2026-12-04T10:00:00+00:00")


def test_cores_used():
    from ffcv_inat.bench.stats import cores_used

    assert cores_used(3.0, 2.0) == 1.5
    with pytest.raises(ValueError):
        cores_used(1.0, 0.0)


def _figures(**by_res):
    from ffcv_inat.bench.stats import DecodeFigure

    return {
        res: {d: DecodeFigure(*f) for d, f in paths.items()}
        for res, paths in ((int(k[1:]), v) for k, v in by_res.items())
    }


def test_decode_verdict_names_the_faster_path_with_its_numbers():
    from ffcv_inat.bench.stats import decode_verdict

    v = decode_verdict(
        _figures(r160={"cpu": (4000, 15.1), "gpu": (9000, 1.6)}, r224={"cpu": (3400, 15.0), "gpu": (8500, 1.8)}),
        "loader throughput alone",
    )
    assert v.startswith("use decode gpu on this machine: by loader throughput alone it is faster at every resolution")
    assert "res 160: cpu 4,000 img/s on 15.1 cores vs gpu 9,000 img/s on 1.6 cores = gpu 2.25x" in v
    assert "res 224: cpu 3,400 img/s on 15.0 cores vs gpu 8,500 img/s on 1.8 cores = gpu 2.50x" in v
    # end to end, one resolution, no cores
    v = decode_verdict(_figures(r224={"gpu": (2000, None), "cpu": (2600, None)}), "end-to-end throughput")
    assert v == (
        "use decode cpu on this machine: by end-to-end throughput it is faster at res 224 "
        "(res 224: cpu 2,600 img/s vs gpu 2,000 img/s = cpu 1.30x)"
    )


def test_decode_verdict_ties_mixed_and_nothing_to_compare():
    from ffcv_inat.bench.stats import DECODE_TIE_TOLERANCE, decode_verdict

    assert DECODE_TIE_TOLERANCE == 0.03
    # within 3% everywhere: a tie, and the path with fewer busy cores is preferred
    v = decode_verdict(_figures(r224={"cpu": (4000, 14.0), "gpu": (4080, 1.5)}), "end-to-end throughput")
    assert v.startswith("either decode path: by end-to-end throughput they are within 3% (noise); prefer decode gpu")
    assert "= gpu 1.02x" in v
    v = decode_verdict(_figures(r224={"cpu": (4000, None), "gpu": (4080, None)}), "end-to-end throughput")
    assert "prefer" not in v  # cores unknown: no preference
    # faster at one resolution, a tie at the other
    v = decode_verdict(
        _figures(r160={"cpu": (4000, 3), "gpu": (4050, 1)}, r224={"cpu": (3400, 3), "gpu": (8500, 1)}),
        "loader throughput alone",
    )
    assert v.startswith(
        "use decode gpu on this machine: by loader throughput alone it is faster or within 3% at every resolution"
    )
    # each path faster somewhere
    v = decode_verdict(
        _figures(r160={"cpu": (9000, 3), "gpu": (4000, 1)}, r224={"cpu": (3400, 3), "gpu": (8500, 1)}),
        "loader throughput alone",
    )
    assert v.startswith("no single faster decode path by loader throughput alone (cpu at res 160, gpu at res 224)")
    # one path per resolution only: nothing to compare
    assert decode_verdict(_figures(r160={"cpu": (1, None)}, r224={"gpu": (2, None)}), "x") is None
    assert decode_verdict({}, "x") is None


def test_target_verdict_checks_speed_and_cores_at_224():
    from ffcv_inat.bench.stats import target_verdict

    v = target_verdict(_figures(r160={"gpu": (9000, 1.0)}, r224={"cpu": (9000, 15.0), "gpu": (8500, 1.8)}))
    assert v == (
        "target >= 8,000 img/s at 224 px on <= 2 CPU cores: cpu decode misses it (cpu 9,000 img/s on "
        "15.0 cores); gpu decode meets it (gpu 8,500 img/s on 1.8 cores)"
    )
    v = target_verdict(_figures(r224={"gpu": (7999, 1.0)}))
    assert "gpu decode misses it" in v
    assert "cores not measured" in target_verdict(_figures(r224={"gpu": (9000, None)}))
    assert target_verdict(_figures(r160={"gpu": (9000, 1.0)})) is None


def test_ceiling_sentence_states_the_fraction_and_what_decode_alone_gives():
    from ffcv_inat.bench.stats import Spread, ceiling_sentence, settled, spread_factor

    resize, decode = Spread(1384.0, 1300.0, 1430.0, 3), Spread(2143.0, 2100.0, 2200.0, 3)
    assert spread_factor(resize) == pytest.approx(1.1)
    assert ceiling_sentence(1277.0, resize, decode, 2) == (
        "1,277 img/s = 92% of this machine's decode + resize ceiling (1,384 img/s, spread 1.10x, 2 threads); "
        "decode alone would be 2,143 img/s (1.55x decode + resize)"
    )
    assert "1 thread);" in ceiling_sentence(10.0, resize, decode, 1)
    # a warm-up has settled when its last two rounds agree within the tolerance
    assert not settled([500.0], 0.1) and not settled([300.0, 500.0], 0.1)
    assert settled([300.0, 500.0, 530.0], 0.1) and not settled([500.0, 560.0], 0.1)
