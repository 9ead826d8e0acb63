"""The paper's findings on hand-made results tables: each verdict pinned (holds / does not hold /
cannot tell) with its numbers; the comparison rules (thresholds, seeds, log-k interpolation)
with exact values. The smoke grid's real run dirs go through it in test_analyze_smoke.py."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ffcv_inat.analyze.comparisons import (
    ABOVE,
    CANNOT_TELL,
    CLEARLY_ABOVE,
    COMPARABLE,
    FAILS,
    HOLDS,
    SIMILAR,
    Comparison,
    Measure,
    certainty,
    compare_curves,
    curve,
    judge,
    measure,
    value_at,
)
from ffcv_inat.analyze.findings import FINDINGS, findings_markdown, findings_table, format_findings
from ffcv_inat.study import IMAGENET_A, INAT

pytestmark = pytest.mark.timeout(60)

TARGET = {"finetune": INAT, "scratch": INAT, "linear": IMAGENET_A}
SEED_OFFSETS = {0: -0.001, 1: 0.0, 2: 0.001}  # sd 0.001 per configuration: 2 SE of a difference = 0.0016


def probe_a(k: float) -> float:
    return 0.20 + 0.06 * math.log2(k / 50)


# A grid where all ten findings hold: (kind, subset, k) -> mean top-1. Finetuning (Figure 3):
# A-k 3 points above R-k, NA-k half a point below R-k, NA 1.5 points above A, ImageNet far
# above; R at 0.398 k lies 5-9 points above A (Figure 6). Probe (Figure 4): R-k = A(0.398 k)
# within 0.3 points (log-linear), NA-k 3 points below R-k, ImageNet just above A.
PAPER_LIKE = {
    **{("finetune", "A", k): v for k, v in ((50, 0.30), (100, 0.36), (200, 0.42), (None, 0.495))},
    **{("finetune", "R", k): v for k, v in ((50, 0.27), (100, 0.33), (200, 0.39), (398, 0.46))},
    ("finetune", "all", None): 0.58,
    **{("finetune", "NA", k): v for k, v in ((50, 0.265), (100, 0.325), (200, 0.385), (398, 0.455), (None, 0.51))},
    ("scratch", "", None): 0.10,
    **{("linear", "A", k): probe_a(398 if k is None else k) for k in (50, 100, 200, None)},
    **{("linear", "R", k): probe_a(k) - 0.08 for k in (50, 100, 200, 398)},
    ("linear", "all", None): 0.385,
    **{("linear", "NA", k): probe_a(k) - 0.11 for k in (50, 100, 200, 398)},
    ("linear", "NA", None): 0.30,
    ("linear", "", None): 0.01,
}


def results(means: dict, seeds=(0, 1, 2)) -> pd.DataFrame:
    """A results table as table.results_table makes it (the columns the findings read)."""
    rows = [
        {
            "run": f"{kind}_{subset}-{k}-s{seed}",
            "kind": kind,
            "subset": subset,
            "k": k,
            "seed": seed,
            "target": TARGET[kind],
            "top1": top1 + SEED_OFFSETS[seed],
        }
        for (kind, subset, k), top1 in means.items()
        for seed in seeds
    ]
    df = pd.DataFrame(rows)
    return df.astype({"k": "Int64", "seed": "Int64"})


def changed(**edits) -> dict:
    """PAPER_LIKE with some means replaced: key 'kind/subset/k' ('' k: the full subset)."""
    out = dict(PAPER_LIKE)
    for key, value in edits.items():
        kind, subset, k = key.split("/")
        out[(kind, subset, int(k) if k else None)] = value
    return out


def without(*families) -> dict:
    """PAPER_LIKE without the runs of (kind, subset) or (kind, subset, k)."""
    return {key: v for key, v in PAPER_LIKE.items() if not any(key[: len(f)] == f for f in families)}


def row(df: pd.DataFrame, number: int) -> pd.Series:
    return findings_table(df).set_index("finding").loc[number]


def test_paper_like_grid_every_finding_holds_with_its_numbers():
    table = findings_table(results(PAPER_LIKE)).set_index("finding")
    assert list(table.index) == [f.number for f in FINDINGS] == list(range(1, 11))
    assert (table["verdict"] == HOLDS).all(), table[["verdict", "detail"]]
    assert (table["needs"] == "").all()
    five = table.loc[5]
    assert (five["a"], five["b"], five["a_seeds"], five["b_seeds"]) == ("A", "R-398", 3, 3)
    assert (five["a_top1"], five["b_top1"], five["difference"]) == pytest.approx((0.495, 0.46, 0.035))
    assert five["certainty"] == "3 seeds: ±0.2 points (2 SE)"  # 2 * hypot(se, se), se = 0.001 / sqrt(3)
    one = table.loc[1]
    assert (one["a"], one["b"], one["difference"]) == ("ImageNet", "NA", pytest.approx(0.07))  # the closest rival
    assert "interpolated (log k): R at 602" in table.loc[6, "detail"]  # NA's end point: R between 398 and 1000
    assert "not compared (outside the other curve's measured range): R at 1000" in table.loc[6, "detail"]


def test_one_seed_says_so_in_every_verdict():
    table = findings_table(results(PAPER_LIKE, seeds=(1,)))
    assert (table["verdict"] == HOLDS).all()
    assert (table["certainty"] == "1 seed: spread not measured").all()
    text = format_findings(table, "synthetic data")
    assert text.splitlines()[0] == "The paper's findings on these runs - synthetic data"
    assert " 5. [Fig. 3] HOLDS - 1 seed: spread not measured" in text
    assert "A 49.5 % vs R-398 46.0 %: +3.5 points" in text


FAILING = {  # finding -> a grid where it does not hold (and the deciding pair)
    1: (changed(**{"finetune/all/": 0.52}), ("ImageNet", "NA")),
    2: (changed(**{"scratch//": 0.60}), ("NA", "scratch")),
    3: (changed(**{"finetune/A/100": 0.32}), ("A-100", "R-100")),
    4: (changed(**{"finetune/NA/": 0.55}), ("A", "NA")),
    5: (changed(**{"finetune/R/398": 0.48}), ("A", "R-398")),
    6: (changed(**{"finetune/NA/100": 0.30}), ("R-100", "NA-100")),
    7: (changed(**{"linear/all/": 0.35}), ("ImageNet", "A")),
    8: (changed(**{"linear/NA/200": 0.23}), ("R-200", "NA-200")),
    9: (changed(**{"finetune/R/398": 0.41}), ("R-398", "A at 158.4 (interpolated A-100..A-200)")),
    10: (changed(**{"linear/all/": 0.45}), ("R x 0.398 at 200 (interpolated R-398..ImageNet)", "A-200")),
}
MISSING = {  # finding -> a grid without what it needs, and a run id it names
    1: (without(("finetune", "all")), "finetune_all-s0"),
    2: (without(("scratch",)), "scratch_s2"),
    3: (without(("finetune", "A")), "finetune_A-200-s1"),
    4: (without(("finetune", "NA", None)), "finetune_NA-s0"),
    5: (without(("finetune", "A", None)), "finetune_A-s2"),
    6: (without(("finetune", "NA")), "finetune_NA-398-s0"),
    7: (without(("linear", "all")), "linear_all-s0"),
    8: (without(("linear", "NA")), "linear_NA-50-s0"),
    9: (without(("finetune", "A")), "finetune_A-50-s0"),
    10: (without(("linear", "R"), ("linear", "all")), "linear_R-398-s1"),
}


@pytest.mark.parametrize("number", range(1, 11))
def test_each_finding_fails_when_its_numbers_say_so(number):
    means, (a, b) = FAILING[number]
    r = row(results(means), number)
    assert r["verdict"] == FAILS, r.to_dict()
    assert (r["a"], r["b"]) == (a, b)
    assert r["needs"] == ""


@pytest.mark.parametrize("number", range(1, 11))
def test_each_finding_cannot_be_told_without_its_runs_and_names_them(number):
    means, run_id = MISSING[number]
    r = row(results(means), number)
    assert r["verdict"] == CANNOT_TELL, r.to_dict()
    assert run_id in r["needs"].split()


def test_partial_grids_test_what_they_can():
    """The smoke default (R family only): 1 and 2 are told, the curves' comparisons are not."""
    smoke = {
        ("finetune", "R", 8): 0.698,
        ("finetune", "all", None): 0.75,
        ("scratch", "", None): 0.635,
        ("linear", "R", 8): 0.025,
        ("linear", "all", None): 0.013,
        ("linear", "", None): 0.005,
    }
    table = findings_table(results(smoke, seeds=(0,))).set_index("finding")
    assert list(table["verdict"]) == [HOLDS, HOLDS] + [CANNOT_TELL] * 4 + [FAILS] + [CANNOT_TELL] * 3
    assert table.loc[1, "needs"] == "finetune_A-s0 finetune_NA-s0"  # the rivals it would need
    assert table.loc[3, "needs"] == "finetune_A-8-s0 finetune_A-s0 finetune_NA-8-s0 finetune_NA-s0"
    assert table.loc[7, "needs"].split()[:2] == ["linear_A-s0", "linear_NA-s0"]  # told, and still incomplete
    assert (table.loc[2, "a"], table.loc[2, "b"], table.loc[2, "difference"]) == (
        "R-8",
        "scratch",
        pytest.approx(0.063),
    )
    assert "not measured: A vs R, A vs NA" in table.loc[3, "detail"]
    md = findings_markdown(findings_table(results(smoke, seeds=(0,))), "synthetic data")
    assert "**synthetic data**" in md and "`finetune_NA-8-s0`" in md
    assert "| 2 | 3 | Pretraining on a large 'irrelevant' set" in md


def test_spread_too_large_to_tell():
    """A 3.5-point gap is 'clearly' with tight seeds, but not when the seeds spread by ±5 points."""
    df = results(PAPER_LIKE)
    noisy = df["kind"].eq("finetune") & df["subset"].eq("R") & df["k"].eq(398)
    df.loc[noisy, "top1"] = [0.41, 0.46, 0.51]
    r = row(df, 5)
    assert r["verdict"] == CANNOT_TELL and r["certainty"].startswith("3 seeds: ±5.8 points")
    assert r["needs"] == ""


def test_runs_on_other_targets_are_not_evidence():
    df = results(PAPER_LIKE)
    df.loc[df["kind"].eq("scratch"), "target"] = "something-else"
    assert row(df, 2)["verdict"] == CANNOT_TELL


# --------------------------------------------------------------------------- the rules


def m(mean, se=None, n=1, label="x") -> Measure:
    return Measure(label, mean, se, n if se is None else max(n, 2))


@pytest.mark.parametrize(
    "claim, diff, se, verdict",
    [
        (ABOVE, 0.001, None, HOLDS),
        (ABOVE, 0.0, None, FAILS),
        (ABOVE, 0.01, 0.004, HOLDS),
        (ABOVE, 0.01, 0.006, CANNOT_TELL),
        (CLEARLY_ABOVE, 0.02, None, HOLDS),
        (CLEARLY_ABOVE, 0.0199, None, FAILS),
        (CLEARLY_ABOVE, 0.03, 0.01, HOLDS),
        (CLEARLY_ABOVE, 0.03, 0.02, CANNOT_TELL),
        (CLEARLY_ABOVE, 0.015, 0.001, FAILS),
        (CLEARLY_ABOVE, 0.015, 0.003, CANNOT_TELL),
        (COMPARABLE, 0.0199, None, HOLDS),
        (COMPARABLE, -0.02, None, FAILS),
        (COMPARABLE, 0.01, 0.006, CANNOT_TELL),
        (COMPARABLE, 0.03, 0.004, FAILS),
        (SIMILAR, 0.01, None, HOLDS),
        (SIMILAR, -0.0101, None, FAILS),
        (SIMILAR, 0.005, 0.002, HOLDS),
        (SIMILAR, 0.005, 0.003, CANNOT_TELL),
        (SIMILAR, 0.02, 0.004, FAILS),
    ],
)
def test_judge(claim, diff, se, verdict):
    # se is the difference's standard error: split evenly over the two sides
    side = None if se is None else se / math.sqrt(2)
    assert judge(claim, Comparison(m(0.5 + diff, side), m(0.5, side))) == verdict


def test_measure_and_certainty():
    three = measure("A", [0.40, 0.42, 0.44])
    assert (three.mean, three.n) == pytest.approx((0.42, 3)) and three.se == pytest.approx(0.02 / math.sqrt(3))
    one = measure("R-8", [0.7])
    assert (one.mean, one.se, one.n) == (0.7, None, 1)
    assert certainty([Comparison(three, one)]) == "1 seed for R-8: spread not measured"
    assert certainty([Comparison(three, measure("NA", [0.40, 0.40]))]) == "2-3 seeds: ±2.3 points (2 SE)"


def test_log_k_interpolation_only_between_measured_points():
    r = curve(
        "R", [(100, m(0.30, 0.01, 3, "R-100")), (400, m(0.50, 0.02, 3, "R-400")), (1000, m(0.60, None, 1, "all"))]
    )
    mid = value_at(r, 200)  # halfway between 100 and 400 on the log axis
    assert mid.mean == pytest.approx(0.40) and mid.se == pytest.approx(math.hypot(0.005, 0.01)) and mid.n == 3
    assert value_at(r, 400).label == "R-400"
    assert value_at(r, 50) is None and value_at(r, 2000) is None  # never extrapolated
    assert value_at(r, 700).se is None  # one side has one seed
    scaled = curve("R x 0.5", r.points, 0.5)
    assert [x for x, _ in scaled.points] == [50, 200, 500]
    a = curve("A", [(50, m(0.2)), (300, m(0.4)), (600, m(0.5))])
    comps, note = compare_curves(a, curve("R", r.points))
    assert [c.at for c in comps] == ["k=100", "k=300", "k=400", "k=600"]
    assert comps[0].a.mean == pytest.approx(0.2 + 0.2 * math.log(2) / math.log(6))
    assert note.endswith("not compared (outside the other curve's measured range): A at 50, R at 1000")
    assert compare_curves(curve("A", [(10, m(0.1))]), curve("R", [(20, m(0.1))]))[0] == []
