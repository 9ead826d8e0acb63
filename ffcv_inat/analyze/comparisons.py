"""How the findings compare accuracies: the words' thresholds, the seeds' spread, and curves
compared on the log-k axis. Pure functions over numbers; findings.py applies them to the table.

Accuracies and differences are top-1 fractions (0.02 = 2 percentage points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

# "clearly" better / worse: a top-1 gap of at least 2 points. Run-to-run spread of a ResNet-50
# trained with a fixed recipe and evaluated on tens of thousands of images is commonly a few
# tenths of a point, so a 2-point gap is several times what a rerun moves, even with one seed.
CLEAR_MARGIN = 0.02
# "comparably": not clearly different, i.e. the gap stays below CLEAR_MARGIN.
COMPARABLE_MARGIN = CLEAR_MARGIN
# "very similarly" / "nearly matches": within 1 point, half of a clear gap.
SIMILAR_MARGIN = 0.01
# With several seeds per configuration a gap is told from seed noise by NOISE_Z standard
# errors of the difference of the means (~95 % if the seeds' spread were known; with 2-5
# seeds it is a rough guard, not a significance test). One seed measures no spread at all.
NOISE_Z = 2.0

HOLDS, FAILS, CANNOT_TELL = "holds", "does not hold", "cannot tell"
# Claims a finding makes about a - b.
ABOVE, CLEARLY_ABOVE, COMPARABLE, SIMILAR = "above", "clearly above", "comparable", "very similar"


def rule_text(claim: str) -> str:
    """What a claim asks of the difference a - b, in points of top-1."""
    return {
        ABOVE: f"a - b > 0 by more than {NOISE_Z:g} SE",
        CLEARLY_ABOVE: f"a - b >= {100 * CLEAR_MARGIN:g} points and > {NOISE_Z:g} SE",
        COMPARABLE: f"|a - b| < {100 * COMPARABLE_MARGIN:g} points, {NOISE_Z:g} SE included",
        SIMILAR: f"|a - b| <= {100 * SIMILAR_MARGIN:g} point, {NOISE_Z:g} SE included",
    }[claim]


@dataclass(frozen=True)
class Measure:
    """One configuration's top-1: the mean over its seeds, the standard error of that mean
    (None with one seed: no spread measured) and the number of seeds."""

    label: str
    mean: float
    se: float | None
    n: int


def measure(label: str, values: Iterable[float]) -> Measure:
    v = [float(x) for x in values]
    if not v:
        raise ValueError(f"{label}: no values")
    mean = sum(v) / len(v)
    if len(v) < 2:
        return Measure(label, mean, None, 1)
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1))
    return Measure(label, mean, sd / math.sqrt(len(v)), len(v))


@dataclass(frozen=True)
class Comparison:
    """a - b at one point (`at`: e.g. "k=50"; "" for two single configurations)."""

    a: Measure
    b: Measure
    at: str = ""

    @property
    def diff(self) -> float:
        return self.a.mean - self.b.mean

    @property
    def se(self) -> float | None:
        if self.a.se is None or self.b.se is None:
            return None
        return math.hypot(self.a.se, self.b.se)


def _interval(c: Comparison) -> tuple[float, float]:
    """difference ± NOISE_Z SE, rounded so that float noise (0.41 - 0.39) does not cross a margin."""
    half = NOISE_Z * (c.se or 0.0)
    return round(c.diff - half, 12), round(c.diff + half, 12)


def judge(claim: str, c: Comparison) -> str:
    """holds / does not hold / cannot tell for one comparison. The gap's interval is its
    difference ± NOISE_Z SE (a point with one seed): the claim holds when the whole interval
    says so, fails when none of it does, and cannot be told when the interval straddles."""
    lo, hi = _interval(c)
    diff = round(c.diff, 12)
    if claim == ABOVE:
        return HOLDS if lo > 0 else FAILS if hi <= 0 else CANNOT_TELL
    if claim == CLEARLY_ABOVE:
        return HOLDS if diff >= CLEAR_MARGIN and lo > 0 else FAILS if hi < CLEAR_MARGIN else CANNOT_TELL
    if claim == COMPARABLE:  # strictly below the clear margin: "not clearly different"
        m = COMPARABLE_MARGIN
        return HOLDS if -m < lo and hi < m else FAILS if lo >= m or hi <= -m else CANNOT_TELL
    m = SIMILAR_MARGIN
    return HOLDS if -m <= lo and hi <= m else FAILS if lo > m or hi < -m else CANNOT_TELL


def slack(claim: str, c: Comparison) -> float:
    """How far the difference is inside the claim (negative: outside): picks the tightest point."""
    lo, hi = _interval(c)
    if claim == ABOVE:
        return lo
    if claim == CLEARLY_ABOVE:
        return min(round(c.diff, 12) - CLEAR_MARGIN, lo)
    margin = COMPARABLE_MARGIN if claim == COMPARABLE else SIMILAR_MARGIN
    return margin - max(abs(lo), abs(hi))


def combine(claim: str, comparisons: Sequence[Comparison]) -> tuple[str, Comparison]:
    """Every comparison must hold: the verdict and the comparison that decides it (the first
    that fails, else the first that cannot be told, else the tightest)."""
    if not comparisons:
        raise ValueError("nothing to compare")
    verdicts = [judge(claim, c) for c in comparisons]
    for wanted in (FAILS, CANNOT_TELL):
        if wanted in verdicts:
            return wanted, comparisons[verdicts.index(wanted)]
    return HOLDS, min(comparisons, key=lambda c: slack(claim, c))


def certainty(comparisons: Sequence[Comparison]) -> str:
    """How sure a verdict is: the seeds behind it and the noise band of the deciding gap."""
    measures = list(dict.fromkeys(m for c in comparisons for m in (c.a, c.b)))
    single = [m.label for m in measures if m.se is None]
    if len(single) == len(measures):
        return "1 seed: spread not measured"
    if single:
        return f"1 seed for {', '.join(single)}: spread not measured"
    ns = sorted({m.n for m in measures})
    seeds = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    widest = max(NOISE_Z * c.se for c in comparisons)
    return f"{seeds} seeds: ±{100 * widest:.1f} points ({NOISE_Z:g} SE)"


# --------------------------------------------------------------------------- curves on the log-k axis


@dataclass(frozen=True)
class Curve:
    """A family's accuracy against the number of (animal) classes in pretraining."""

    name: str
    points: tuple[tuple[float, Measure], ...]  # (x, measure), x ascending, x > 0


def curve(name: str, points: Iterable[tuple[float, Measure]], x_scale: float = 1.0) -> Curve:
    return Curve(name, tuple(sorted(((float(x) * x_scale, m) for x, m in points), key=lambda p: p[0])))


def value_at(c: Curve, x: float) -> Measure | None:
    """The curve's measure at x: measured there, else interpolated linearly in log x between
    its two measured neighbours; None outside its measured range (never extrapolated)."""
    for px, m in c.points:
        if math.isclose(px, x, rel_tol=1e-9):
            return m
    below = [(px, m) for px, m in c.points if px < x]
    above = [(px, m) for px, m in c.points if px > x]
    if not below or not above:
        return None
    (x0, m0), (x1, m1) = below[-1], above[0]
    w = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
    se = None if m0.se is None or m1.se is None else math.hypot((1 - w) * m0.se, w * m1.se)
    return Measure(
        f"{c.name} at {x:.4g} (interpolated {m0.label}..{m1.label})",
        (1 - w) * m0.mean + w * m1.mean,
        se,
        min(m0.n, m1.n),
    )


def compare_curves(a: Curve, b: Curve, axis: str = "k") -> tuple[list[Comparison], str]:
    """a - b at every x either curve measured inside both curves' measured range, and a note
    of where they were compared, where one was interpolated and what lay outside."""
    if not a.points or not b.points:
        return [], ""  # the finding lists the curve as not measured
    lo, hi = max(a.points[0][0], b.points[0][0]), min(a.points[-1][0], b.points[-1][0])
    xs = sorted({x for x, _ in a.points + b.points})
    inside = [x for x in xs if lo * (1 - 1e-9) <= x <= hi * (1 + 1e-9)]
    comps = [Comparison(value_at(a, x), value_at(b, x), f"{axis}={x:.4g}") for x in inside]
    if not comps:
        return [], f"{a.name} and {b.name} measured over no common {axis} range"
    note = f"{a.name} vs {b.name} at {axis} = {', '.join(f'{x:.4g}' for x in inside)}"
    interpolated = [
        f"{c.name} at {x:.4g}"
        for x in inside
        for c in (a, b)
        if not any(math.isclose(px, x, rel_tol=1e-9) for px, _ in c.points)
    ]
    if interpolated:
        note += f"; interpolated (log {axis}): {', '.join(interpolated)}"
    outside = [f"{c.name} at {x:.4g}" for c in (a, b) for x, _ in c.points if x not in inside]
    if outside:
        note += f"; not compared (outside the other curve's measured range): {', '.join(outside)}"
    return comps, note
