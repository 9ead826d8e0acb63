"""Resources per kind of run: `--gpus-per-run pretrain=8,finetune=1` or one value for all.

A pretraining of 1.28 M images for 90 epochs wants a whole node; a linear probe fits one GPU.
Each resource option of `ffcv-sweep run` takes one value (every kind) or KIND=VALUE pairs (the
kinds not named keep the option's default for them). Pure: parsed and checked before anything
is queued, so a bad one is one line naming the option.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .. import UserError
from .plan import TRAIN_KINDS

# The kinds a resource can be given for: what a sweep's jobs are (the smoke grid's data row
# counts as a beton job: it writes files and trains nothing).
RESOURCE_KINDS = ("beton", *TRAIN_KINDS)


def job_kind(kind: str) -> str:
    """The resource kind of a plan row's kind (data -> beton)."""
    return "beton" if kind in ("data", "beton") else kind


@dataclass(frozen=True)
class PerKind:
    """A value per kind of run: `default` for kinds not in `values`."""

    default: int | None
    values: Mapping[str, int | None] = field(default_factory=dict)

    def of(self, kind: str) -> int | None:
        return self.values.get(job_kind(kind), self.default)

    def describe(self) -> str:
        """As the option would be given: 8, or pretrain=8,finetune=1 (the default elsewhere)."""
        if not self.values:
            return str(self.default)
        return ",".join(f"{k}={v}" for k, v in self.values.items())


def as_per_kind(value: "PerKind | int | None") -> PerKind:
    """A PerKind, or one value for every kind."""
    return value if isinstance(value, PerKind) else PerKind(value)


def parse_per_kind(
    option: str,
    text: str | None,
    default: int | None,
    *,
    minimum: int = 1,
    kinds: tuple[str, ...] = RESOURCE_KINDS,
    defaults: Mapping[str, int | None] | None = None,
) -> PerKind:
    """`text` as given to `option` ("8" or "pretrain=8,finetune=1"; None = not given) -> PerKind.

    `defaults`: per-kind defaults (e.g. betons' time limit) that one value replaces and
    KIND=VALUE pairs override kind by kind. `kinds`: the kinds the option can be given for (GPUs
    make no sense for a beton). Every value must be an integer >= `minimum`."""
    base = dict(defaults or {})
    if text is None:
        return PerKind(default, base)
    text = text.strip()

    def number(raw: str, where: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise UserError(f"{option} {text}: {where}{raw!r} is not a whole number") from None
        if value < minimum:
            raise UserError(f"{option} {text}: {where}{value} is below {minimum}")
        return value

    if "=" not in text:  # one value for every kind, the per-kind defaults included
        if not text.lstrip("-").isdigit():
            raise UserError(f"{option} {text}: expected a whole number or KIND=VALUE,... (kinds: {', '.join(kinds)})")
        return PerKind(number(text, ""), {})
    values, given = dict(base), set()
    for item in text.split(","):
        kind, sep, raw = item.strip().partition("=")
        kind = kind.strip()
        if not sep or not kind:
            raise UserError(f"{option} {text}: expected a whole number or KIND=VALUE,... (kinds: {', '.join(kinds)})")
        if kind not in RESOURCE_KINDS:
            raise UserError(f"{option} {text}: unknown kind {kind!r} (kinds: {', '.join(kinds)})")
        if kind not in kinds:
            raise UserError(f"{option} {text}: a {kind} job takes no {option} (kinds: {', '.join(kinds)})")
        if kind in given:
            raise UserError(f"{option} {text}: {kind} given twice")
        given.add(kind)
        values[kind] = number(raw.strip(), f"{kind}=")
    return PerKind(default, values)
