"""The paper's ten findings (Sections 3.1 and 3.2; Figures 3, 4 and 6) tested on the results table.

Every finding is a comparison between rows of results.csv, judged by comparisons.py's rules
(thresholds, seeds' spread, log-k interpolation). Pure functions of the table: findings_table
gives one row per finding with the numbers behind its verdict and the runs it still needs,
named as `ffcv-sweep plan` names them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from ..classes import subset_label
from ..study import ANIMAL_SHARE, IMAGENET_A, INAT, family_of, num_pretrain_classes
from ..sweep.plan import DEFAULT_KS, pretrain_subsets, training_run_id
from .comparisons import (
    ABOVE,
    CANNOT_TELL,
    CLEAR_MARGIN,
    CLEARLY_ABOVE,
    COMPARABLE,
    COMPARABLE_MARGIN,
    HOLDS,
    NOISE_Z,
    SIMILAR,
    SIMILAR_MARGIN,
    Comparison,
    Curve,
    Measure,
    certainty,
    combine,
    compare_curves,
    curve,
    measure,
    rule_text,
    value_at,
)

FINETUNE, PROBE, SCRATCH = "finetune", "linear", "scratch"
# What each downstream kind is evaluated on in the study; runs on anything else are not its evidence.
TARGET = {FINETUNE: INAT, PROBE: IMAGENET_A, SCRATCH: INAT}
# The no-pretraining reference of each downstream kind: scratch for finetuning, the probe of a
# random-init network for the probe (both have no pretraining subset).
NO_PRETRAINING = {FINETUNE: SCRATCH, PROBE: PROBE}


@dataclass(frozen=True)
class Finding:
    number: int
    figure: str
    claim: str  # the paper's words
    test: str  # what is compared here


FINDINGS = (
    Finding(
        1,
        "3",
        "Finetuned on iNat-Mini-A, pretraining on all of ImageNet gives the highest accuracy, by far.",
        "ImageNet clearly above every other pretraining measured and above scratch",
    ),
    Finding(
        2,
        "3",
        "Pretraining on a large 'irrelevant' set (ImageNet-NA, or the largest NA-k / R-k) is still "
        "better than no pretraining (scratch).",
        "NA, the largest NA-k and the largest R-k measured, each above scratch",
    ),
    Finding(
        3,
        "3",
        "ImageNet-A-k beats ImageNet-R-k and ImageNet-NA-k at every k (A is the most sample-efficient).",
        "A's curve above R's and above NA's at every k both measured",
    ),
    Finding(4, "3", "ImageNet-A (398 classes) performs comparably to ImageNet-NA (602 classes).", "A comparable to NA"),
    Finding(5, "3", "ImageNet-R-398 is clearly worse than ImageNet-A.", "A clearly above R-398"),
    Finding(
        6,
        "3",
        "ImageNet-R-k performs very similarly to ImageNet-NA-k.",
        "R's curve very similar to NA's at every k both measured",
    ),
    Finding(
        7,
        "4",
        "Linear probe on ImageNet-A: all of ImageNet is again the most accurate, and A again the most "
        "sample-efficient.",
        "probe: ImageNet above every other pretraining and the random-init probe; A's curve above R's and NA's",
    ),
    Finding(
        8,
        "4",
        "Linear probe on ImageNet-A: ImageNet-NA-k is clearly worse than ImageNet-R-k at equal k.",
        "probe: R's curve clearly above NA's at every k both measured",
    ),
    Finding(
        9,
        "6",
        "On iNat-Mini-A the R curve scaled by 0.398 lies clearly above the A curve: animal classes alone "
        "do not explain the gain.",
        "finetune: R's curve at x = 0.398 k clearly above A's, at every x both measured",
    ),
    Finding(
        10,
        "6",
        "On ImageNet-A the R curve scaled by 0.398 nearly matches the A curve: there, the animal "
        "classes account for the gain.",
        "probe: R's curve at x = 0.398 k very similar to A's, at every x both measured",
    ),
)


# --------------------------------------------------------------------------- the runs, as the findings see them


@dataclass(frozen=True)
class Runs:
    """Top-1 values per downstream kind and configuration (subset, k): one value per seed."""

    acc: dict[str, dict[tuple[str, int | None], list[float]]]
    seeds: tuple[int, ...]  # the seeds the grid has; missing runs are named for each
    ks: tuple[int, ...]  # the k values the grid has (the plan's defaults when none)


def runs_from_table(df: pd.DataFrame) -> Runs:
    acc: dict[str, dict] = {kind: {} for kind in TARGET}
    seeds, ks = set(), set()
    for kind, target in TARGET.items():
        d = df[(df["kind"] == kind) & (df["target"] == target) & df["top1"].notna()]
        for subset, k, seed, top1 in zip(d["subset"].fillna(""), d["k"], d["seed"], d["top1"]):
            k = None if pd.isna(k) else int(k)
            acc[kind].setdefault((str(subset), k), []).append(float(top1))
            seeds |= set() if pd.isna(seed) else {int(seed)}
            ks |= set() if k is None else {k}
    return Runs(acc, tuple(sorted(seeds)) or (0,), tuple(sorted(ks)) or DEFAULT_KS)


def label(subset: str, k: int | None, kind: str = FINETUNE) -> str:
    if not subset:
        return "scratch" if kind == SCRATCH else "random init"
    return "ImageNet" if subset == "all" else subset_label(subset, k)


def get(runs: Runs, kind: str, subset: str, k: int | None = None) -> Measure | None:
    values = runs.acc[kind].get((subset, k))
    return measure(label(subset, k, kind), values) if values else None


def pretrained(runs: Runs, kind: str, exclude: str = "") -> list[Measure]:
    """Every measured pretraining of the study's subsets (not external checkpoints), in a stable order."""
    keys = [(s, k) for s, k in runs.acc[kind] if family_of(s) and s != exclude]
    return [get(runs, kind, s, k) for s, k in sorted(keys, key=lambda t: (t[0], t[1] or 0))]


def family_curve(runs: Runs, kind: str, family: str, x_scale: float = 1.0) -> Curve:
    points = [
        (num_pretrain_classes(s, k), measure(label(s, k), v))
        for (s, k), v in runs.acc[kind].items()
        if family_of(s) == family
    ]
    return curve(family if x_scale == 1.0 else f"{family} x {x_scale:.3f}", points, x_scale)


def missing(runs: Runs, kind: str, configs) -> list[str]:
    """Run ids, as `ffcv-sweep plan` names them, of the configurations without any run of this kind."""
    return [
        training_run_id(kind, s, k, seed) for s, k in configs if (s, k) not in runs.acc[kind] for seed in runs.seeds
    ]


def family_configs(runs: Runs, *families: str) -> list[tuple[str, int | None]]:
    """The class sets of the families' curves at the grid's k values, as the plan draws them."""
    return [(s, k) for fam, s, k in pretrain_subsets(runs.ks, families) if fam in families]


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Outcome:
    verdict: str
    claim: str
    comparisons: tuple[Comparison, ...] = ()
    decisive: Comparison | None = None
    detail: str = ""
    needs: tuple[str, ...] = field(default_factory=tuple)


Part = tuple[str, list[Comparison], str]  # (what, its comparisons, a note on what was compared)


def outcome(claim: str, parts: list[Part], needs: list[str]) -> Outcome:
    """Every part of a finding must hold. A part with nothing measured leaves it untold unless
    another part already fails it."""
    comps = [c for _, cs, _ in parts for c in cs]
    needs = list(dict.fromkeys(needs))
    notes = [note for _, _, note in parts if note]
    untested = [what for what, cs, _ in parts if not cs]
    if untested:
        notes.append(f"not measured: {', '.join(untested)}")
    if not comps:
        return Outcome(CANNOT_TELL, claim, detail="; ".join(notes), needs=tuple(needs))
    verdict, decisive = combine(claim, comps)
    if untested and verdict == HOLDS:
        verdict = CANNOT_TELL
    return Outcome(verdict, claim, tuple(comps), decisive, "; ".join(notes), tuple(needs))


def versus(a: Measure | None, b: Measure | None, what: str) -> Part:
    return (what, [Comparison(a, b)] if a is not None and b is not None else [], "")


def curves_part(a: Curve, b: Curve, axis: str = "k") -> Part:
    comps, note = compare_curves(a, b, axis)
    return (f"{a.name} vs {b.name}", comps, note)


def best_of_all(runs: Runs, kind: str) -> tuple[Part, list[str]]:
    """ImageNet against every other pretraining measured and against no pretraining."""
    full = get(runs, kind, "all")
    others = pretrained(runs, kind, exclude="all")
    ref = get(runs, NO_PRETRAINING[kind], "")
    comps = [Comparison(full, o) for o in others + ([ref] if ref else [])] if full and others else []
    needs = missing(runs, kind, [("all", None), ("A", None), ("NA", None)])
    return ("ImageNet vs another pretraining", comps, ""), needs


# --------------------------------------------------------------------------- the ten tests


def imagenet_by_far(runs: Runs) -> Outcome:
    part, needs = best_of_all(runs, FINETUNE)
    return outcome(CLEARLY_ABOVE, [part], needs + missing(runs, SCRATCH, [("", None)]))


def irrelevant_beats_scratch(runs: Runs) -> Outcome:
    """NA itself, the largest NA-k and the largest R-k measured (R-k, not all: it has every class)."""
    scratch = get(runs, SCRATCH, "")
    keys = runs.acc[FINETUNE]
    largest = [
        (fam, max(k for s, k in keys if s == fam and k is not None))
        for fam in ("NA", "R")
        if any(s == fam and k is not None for s, k in keys)
    ]
    candidates = [m for m in [get(runs, FINETUNE, "NA")] + [get(runs, FINETUNE, f, k) for f, k in largest] if m]
    comps = [Comparison(m, scratch) for m in candidates] if scratch else []
    what = " and ".join(w for w, ok in (("scratch", scratch), ("NA, NA-k or R-k", candidates)) if not ok)
    needs = missing(runs, SCRATCH, [("", None)]) + ([] if candidates else missing(runs, FINETUNE, [("NA", None)]))
    return outcome(ABOVE, [(what or "a large set vs scratch", comps, "")], needs)


def a_most_efficient_parts(runs: Runs, kind: str) -> tuple[list[Part], list[str]]:
    a = family_curve(runs, kind, "A")
    parts = [curves_part(a, family_curve(runs, kind, "R")), curves_part(a, family_curve(runs, kind, "NA"))]
    return parts, missing(runs, kind, family_configs(runs, "A", "R", "NA"))


def a_beats_r_and_na(runs: Runs) -> Outcome:
    parts, needs = a_most_efficient_parts(runs, FINETUNE)
    return outcome(ABOVE, parts, needs)


def a_comparable_to_na(runs: Runs) -> Outcome:
    part = versus(get(runs, FINETUNE, "A"), get(runs, FINETUNE, "NA"), "A vs NA")
    return outcome(COMPARABLE, [part], missing(runs, FINETUNE, [("A", None), ("NA", None)]))


def r398_clearly_below_a(runs: Runs) -> Outcome:
    """R at 398 classes: R-398 itself, else log-k interpolated between the R points around it."""
    r398 = value_at(family_curve(runs, FINETUNE, "R"), 398)
    part = versus(get(runs, FINETUNE, "A"), r398, "A vs R-398")
    return outcome(CLEARLY_ABOVE, [part], missing(runs, FINETUNE, [("A", None)] + ([] if r398 else [("R", 398)])))


def r_similar_to_na(runs: Runs) -> Outcome:
    part = curves_part(family_curve(runs, FINETUNE, "R"), family_curve(runs, FINETUNE, "NA"))
    return outcome(SIMILAR, [part], missing(runs, FINETUNE, family_configs(runs, "R", "NA")))


def probe_imagenet_and_a(runs: Runs) -> Outcome:
    best, needs = best_of_all(runs, PROBE)
    parts, curve_needs = a_most_efficient_parts(runs, PROBE)
    return outcome(ABOVE, [best, *parts], needs + curve_needs + missing(runs, PROBE, [("", None)]))


def probe_na_clearly_below_r(runs: Runs) -> Outcome:
    part = curves_part(family_curve(runs, PROBE, "R"), family_curve(runs, PROBE, "NA"))
    return outcome(CLEARLY_ABOVE, [part], missing(runs, PROBE, family_configs(runs, "R", "NA")))


def scaled_r_vs_a(runs: Runs, kind: str, claim: str) -> Outcome:
    """Figure 6: R's x is its expected number of animal classes, 0.398 k, beside A's k."""
    part = curves_part(family_curve(runs, kind, "R", ANIMAL_SHARE), family_curve(runs, kind, "A"), "x")
    return outcome(claim, [part], missing(runs, kind, family_configs(runs, "R", "A")))


TESTS: dict[int, Callable[[Runs], Outcome]] = {
    1: imagenet_by_far,
    2: irrelevant_beats_scratch,
    3: a_beats_r_and_na,
    4: a_comparable_to_na,
    5: r398_clearly_below_a,
    6: r_similar_to_na,
    7: probe_imagenet_and_a,
    8: probe_na_clearly_below_r,
    9: lambda runs: scaled_r_vs_a(runs, FINETUNE, CLEARLY_ABOVE),
    10: lambda runs: scaled_r_vs_a(runs, PROBE, SIMILAR),
}


# --------------------------------------------------------------------------- the table and its reports

COLUMNS = [
    "finding",
    "figure",
    "claim",
    "verdict",
    "certainty",
    "a",
    "a_top1",
    "a_seeds",
    "b",
    "b_top1",
    "b_seeds",
    "difference",
    "at",
    "test",
    "detail",
    "needs",
]


def finding_row(f: Finding, o: Outcome) -> dict:
    d = o.decisive
    return {
        "finding": f.number,
        "figure": f.figure,
        "claim": f.claim,
        "verdict": o.verdict,
        "certainty": certainty(o.comparisons) if o.comparisons else "",
        "a": d.a.label if d else "",
        "a_top1": d.a.mean if d else None,
        "a_seeds": d.a.n if d else None,
        "b": d.b.label if d else "",
        "b_top1": d.b.mean if d else None,
        "b_seeds": d.b.n if d else None,
        "difference": d.diff if d else None,
        "at": d.at if d else "",
        "test": f"{f.test} ({rule_text(o.claim)})",
        "detail": o.detail,
        "needs": " ".join(o.needs),
    }


def findings_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per finding: verdict, certainty, the deciding comparison (a - b, top-1 fractions,
    seeds behind each side, where), how it was tested, what was compared, runs still needed."""
    runs = runs_from_table(df)
    table = pd.DataFrame([finding_row(f, TESTS[f.number](runs)) for f in FINDINGS], columns=COLUMNS)
    return table.astype({"a_seeds": "Int64", "b_seeds": "Int64"})


def numbers(row) -> str:
    """The deciding comparison in words: ImageNet 75.0 % vs R-8 69.8 %: +5.2 points at k=8."""
    if not row["a"]:
        return ""
    at = f" at {row['at']}" if row["at"] else ""
    return (
        f"{row['a']} {100 * row['a_top1']:.1f} % vs {row['b']} {100 * row['b_top1']:.1f} %: "
        f"{100 * row['difference']:+.1f} points{at}"
    )


def _short(needs: str, most: int = 4) -> str:
    ids = needs.split()
    return " ".join(ids[:most]) + (f" ... ({len(ids)} runs)" if len(ids) > most else "")


def thresholds_line() -> str:
    return (
        f"'clearly': >= {100 * CLEAR_MARGIN:g} points of top-1; 'comparably': < {100 * COMPARABLE_MARGIN:g}; "
        f"'very similarly': <= {100 * SIMILAR_MARGIN:g}; seeds' noise: {NOISE_Z:g} SE of the difference"
    )


def given_weights(df: pd.DataFrame) -> list[str]:
    """One line per class set whose point comes from given weights, not a pretraining run of the
    study (`ffcv-sweep plan --pretrained`): the set, the file, and the runs that used it."""
    if "pretraining" not in df:
        return []
    d = df[df["pretraining"] == "given"]
    out = []
    for (subset, k, init), g in d.groupby([d["subset"], d["k"].astype("string").fillna(""), d["init"]], sort=True):
        name = subset_label(subset, int(k) if k else None)
        out.append(f"{name}: given weights {init}, not a pretraining run of this study ({', '.join(sorted(g['run']))})")
    return out


def format_findings(table: pd.DataFrame, caption: str = "", given: list[str] = ()) -> str:
    """The findings for the terminal: one block per finding (`given`: given_weights' lines)."""
    title = "The paper's findings on these runs" + (f" - {caption}" if caption else "")
    lines = [title, thresholds_line(), *(f"counted as a set's pretraining: {g}" for g in given), ""]
    for _, r in table.iterrows():
        lines.append(
            f"{r['finding']:>2}. [Fig. {r['figure']}] {r['verdict'].upper()}"
            + (f" - {r['certainty']}" if r["certainty"] else "")
        )
        lines.append(f"    {r['claim']}")
        if r["a"]:
            lines.append(f"    {numbers(r)}")
        if r["needs"]:
            lines.append(f"    missing runs: {_short(r['needs'])}")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def findings_markdown(table: pd.DataFrame, caption: str = "", given: list[str] = ()) -> str:
    """findings.md: the table with each finding's test, what was compared and the runs it needs."""
    out = ["# The paper's findings on these runs", ""]
    if caption:
        out += [f"**{caption}**", ""]
    if given:
        out += ["Counted as a set's pretraining:", "", *(f"- {_cell(g)}" for g in given), ""]
    out += [
        f"Thresholds ({thresholds_line()}): see docs/analysis.md. Missing runs are named as "
        "`ffcv-sweep plan` names them.",
        "",
        "| # | Fig. | The paper says | Verdict | Numbers | Certainty |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        out.append(
            f"| {r['finding']} | {r['figure']} | {_cell(r['claim'])} | {r['verdict']} | {_cell(numbers(r))} "
            f"| {_cell(r['certainty'])} |"
        )
    out += ["", "## How each was tested", ""]
    for _, r in table.iterrows():
        compared = f" {_cell(r['detail'])}." if r["detail"] else ""
        out.append(f"{r['finding']}. {_cell(r['test'])}.{compared}")
        if r["needs"]:
            out.append(f"   Missing runs: {', '.join(f'`{x}`' for x in r['needs'].split())}.")
    return "\n".join(out) + "\n"
