"""Results rows: one per measurement, appended to a CSV with the machine and versions it ran on.

Every row carries the same columns (so pandas reads the file as one table across machines
and months); settings that only some benches have go into the JSON `settings` column.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import MISSING, fields
from pathlib import Path, PurePath
from typing import Any, ClassVar, Mapping, TypeVar

from ffcv_inat import UserError
from ffcv_inat.bench.machine import ENVIRONMENT_COLUMNS, environment

R = TypeVar("R", bound="ResultRow")

# Where rows go unless --results says: $FFCV_INAT_BENCH_RESULTS, else bench/results/results.csv
# of the working directory (a checkout's own; never the installed package's folder).
RESULTS_ENV = "FFCV_INAT_BENCH_RESULTS"
DEFAULT_RESULTS_SHOWN = f"${RESULTS_ENV} or ./bench/results/results.csv"

MEASUREMENT_COLUMNS = [
    "bench",  # loader | model | epoch
    "pipeline",  # ffcv | dali | pytorch | model | trainer
    "command",
    "res",
    "batch",
    "workers",
    "precision",
    "channels_last",
    "compile",
    "images_per_second",  # median over measured epochs (loader) / all measured steps (model)
    "images_per_second_min",
    "images_per_second_max",
    "runs",
    "ms_per_step",
    "peak_memory_mb",
    "memory_kind",
    "epoch_seconds",
    "extrapolated",
    "ratio",
    "verdict",
    "settings",  # JSON: everything else needed to reproduce the measurement
]
COLUMNS = ENVIRONMENT_COLUMNS + MEASUREMENT_COLUMNS


def default_results() -> Path:
    """The results CSV when none is given: $FFCV_INAT_BENCH_RESULTS, else
    ./bench/results/results.csv."""
    return Path(os.environ.get(RESULTS_ENV) or Path.cwd() / "bench" / "results" / "results.csv")


def recorded_path(path: str | PurePath, root: str | PurePath | None = None) -> str:
    """How a results row names a file or folder (images, beton) without any machine's absolute
    path: relative to `root` (default: the working directory, a checkout when benches run)
    when it lies under it, else only its own name.

    Pure given `root`: give absolute paths (the caller resolves them); a relative one counts
    as outside.
    """
    path, root = PurePath(path), PurePath(root if root is not None else Path.cwd())
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


class ResultRow:
    """A results row as a dataclass: subclasses are frozen dataclasses with `BENCH` (the bench
    column) and a `pipeline` field. Fields named like a results column fill that column; the
    others are the row's `settings` (JSON), where a field left None is not written. The schema
    of each bench's row lives beside the bench that makes it (throughput/loader.py,
    throughput/model.py, throughput/epoch.py); this module writes and reads them."""

    BENCH: ClassVar[str]


def to_record(row: ResultRow, command: str, env: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CSV row of `row`: the machine (`env`, default this one now), its columns, its settings."""
    values = {f.name: getattr(row, f.name) for f in fields(row)}
    pipeline = values.pop("pipeline")
    columns = {k: v for k, v in values.items() if k in MEASUREMENT_COLUMNS}
    settings = {k: v for k, v in values.items() if k not in MEASUREMENT_COLUMNS and v is not None}
    return make_row(row.BENCH, pipeline, command, settings, env=env, **columns)


def _cell(v):
    """A CSV cell as Python: empty and NaN are None."""
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v  # numpy scalars (pandas rows)


def from_record(cls: type[R], record: Mapping[str, Any]) -> R:
    """A row of `cls` from a CSV row (a dict or a pandas row): its columns and settings; a
    field the row lacks (an older row) is its default, or None."""
    settings = json.loads(record.get("settings") or "{}")
    values = {}
    for f in fields(cls):
        v = _cell(record.get(f.name)) if f.name in MEASUREMENT_COLUMNS else settings.get(f.name)
        if v is None and f.default is not MISSING:
            v = f.default
        values[f.name] = v
    return cls(**values)


def read_rows(df, cls: type[R]) -> list[R]:
    """Every row of `df` (read_results) that `cls`'s bench made, as `cls`."""
    return [from_record(cls, r) for r in df[df["bench"] == cls.BENCH].to_dict("records")]


def make_row(
    bench: str,
    pipeline: str,
    command: str,
    settings: dict[str, Any] | None = None,
    env: dict[str, Any] | None = None,
    **figures: Any,
) -> dict[str, Any]:
    """A full row: environment + the given figures; columns not given are left empty."""
    unknown = set(figures) - set(MEASUREMENT_COLUMNS)
    if unknown:
        raise ValueError(f"not results columns: {sorted(unknown)}")
    row = dict.fromkeys(COLUMNS, "")
    row.update(env if env is not None else environment())
    row.update(bench=bench, pipeline=pipeline, command=command, settings=json.dumps(settings or {}, sort_keys=True))
    row.update({k: v for k, v in figures.items() if v is not None})
    for k, v in row.items():
        if isinstance(v, float):
            row[k] = round(v, 4)
    return row


def append_rows(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Append rows to the CSV at `path`, writing the header if the file is new."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"results folder does not exist: {path.parent}")
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if header != COLUMNS:
            raise UserError(f"{path} has other columns than this version writes; pass --results NEW.csv")
    for row in rows:
        if set(row) != set(COLUMNS):
            raise ValueError(f"row columns differ from COLUMNS: {sorted(set(row) ^ set(COLUMNS))}")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    if new:
        w.writeheader()
    w.writerows(rows)
    with path.open("a", newline="") as f:
        f.write(buf.getvalue())  # one write keeps rows of concurrent benches from interleaving
    return path


def read_results(path: str | Path):
    """The results CSV as a pandas DataFrame (settings left as JSON strings)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no results file at {path}: run a benchmark first (or pass --results)")
    df = pd.read_csv(path)
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise UserError(f"{path} is not a bench results file (missing {', '.join(sorted(missing))})")
    return df
