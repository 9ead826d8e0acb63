"""`ffcv-bench prepare imagenet-sized` and `ffcv-bench view-cost`: a parent beton of tiny raw
images in ImageNet's classes, a view of it and the view's standalone copy, and the bench that
compares the two loaders (a small parent here; 1.28 M samples in the recorded rows)."""

import numpy as np
import pytest
from click.testing import CliRunner

from ffcv_inat.bench.cli import main
from ffcv_inat.bench.data.imagenet_sized import TinyImages, class_counts
from ffcv_inat.bench.results import read_results, read_rows
from ffcv_inat.bench.throughput.view_cost import LoaderStart, ViewCostRow, view_cost_rows
from ffcv_inat.beton import check_beton, label_lookup, read_labels, read_layout, sample_indices
from ffcv_inat.classes import select_classes
from helpers.betons import stored_image_bytes


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_class_counts_are_even_and_sum_to_the_samples():
    counts = class_counts(1_281_167, 1000)
    assert counts.sum() == 1_281_167 and set(counts[:167]) == {1282} and set(counts[167:]) == {1281}
    images = TinyImages(class_counts(10, 3), side=8)  # classes of 4, 3, 3 samples, in blocks
    assert [images[i][1] for i in range(10)] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert np.array_equal(images[3][0], images.pool[3]) and images[3][0].shape == (8, 8, 3)


def test_view_cost_rows_compare_the_view_with_its_copy():
    def starts(first, peak, rate):
        return [LoaderStart(f, 0.0, 0.0, p, 1.0, r) for f, p, r in zip(first, peak, rate)]

    measured = {
        "view": starts([2.0, 2.4, 2.2], [150, 170, 160], [900, 1100, 1000]),
        "copy": starts([2.0] * 3, [100] * 3, [1000] * 3),
    }
    run = {"res": 32, "batch": 8, "workers": 1, "min_round_seconds": 0.5}
    view, copy = view_cost_rows(
        measured, run, {"view": "v.view.json", "copy": "c.beton"}, {"view": (10, 100), "copy": (10, 10)}
    )
    assert (view.pipeline, view.images_per_second, view.ratio, view.runs) == ("view", 1000.0, 1.0, 3)
    assert (view.first_batch_seconds, view.first_batch_seconds_over_copy, view.rss_peak_over_copy_mb) == (
        2.2,
        0.2,
        60.0,
    )
    assert (view.parent_samples, copy.parent_samples, copy.ratio, copy.rss_peak_over_copy_mb) == (100, 10, None, None)


@pytest.mark.timeout(240)
def test_a_view_and_its_copy_hold_the_same_samples_and_the_bench_compares_them(tmp_path):
    out = tmp_path / "sized"
    r = invoke("prepare", "imagenet-sized", out, "--samples", 3000, "--subset", "R", "--k", 10)
    assert r.exit_code == 0, r.output
    parent, view, copy = (
        out / f"imagenet_{n}_train{s}" for n, s in (("all", ".beton"), ("R-10_s0", ".view.json"), ("R-10_s0", ".beton"))
    )
    p, v, c = check_beton(parent), check_beton(view), check_beton(copy)
    assert p.num_images == 3000 and [x.id for x in p.classes] == select_classes("all")
    assert [x.id for x in v.classes] == [x.id for x in c.classes] == select_classes("R", 10, 0)
    assert v.num_images == c.num_images == 30 and c.view is None and c.integrity.num_samples == 30
    # The copy's labels are the view's: the parent's labels of its samples, mapped.
    parent_labels = read_labels(parent, read_layout(parent))
    want = label_lookup(v)[parent_labels[sample_indices(v)]]
    assert np.array_equal(read_labels(copy, read_layout(copy)), want)
    # ... and its pixels the same, in the same order: raw samples, so their stored bytes are the pixels.
    in_parent = stored_image_bytes(parent)
    assert stored_image_bytes(copy) == [in_parent[i] for i in sample_indices(v)]

    results = tmp_path / "results.csv"
    r = invoke(
        "view-cost",
        view,
        "--copy",
        copy,
        "--rounds",
        1,
        "--batch",
        8,
        "--workers",
        1,
        "--min-seconds",
        0.2,
        "--results",
        results,
    )
    assert r.exit_code == 0, r.output
    rows = read_rows(read_results(results), ViewCostRow)
    assert [row.pipeline for row in rows] == ["view", "copy"]
    command = read_results(results)["command"][0]  # the view, a positional argument, is in it too
    assert command.startswith(
        "ffcv-bench view-cost imagenet_R-10_s0_train.view.json --copy imagenet_R-10_s0_train.beton"
    )
    assert [(row.num_images, row.parent_samples) for row in rows] == [(30, 3000), (30, 30)]
    assert all(row.first_batch_seconds > 0 and row.images_per_second > 0 for row in rows)
    assert "the view: " in r.output and "x the copy's images/s" in r.output

    r = invoke("view-cost", view, "--copy", view, "--results", results)
    assert r.exit_code == 1 and "--copy is a view" in r.output
    r = invoke("view-cost", copy, "--copy", copy, "--results", results)
    assert r.exit_code == 1 and "not a view" in r.output
