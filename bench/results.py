"""Results rows: one per measurement, appended to a CSV with the machine and versions it ran on.

Every row carries the same columns (so pandas reads the file as one table across machines
and months); settings that only some benches have go into the JSON `settings` column.
"""
from __future__ import annotations

import csv
import datetime
import io
import json
import os
import platform
import socket
from pathlib import Path, PurePath
from typing import Any

from ffcv_inat import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO_ROOT / "bench" / "results" / "results.csv"

ENVIRONMENT_COLUMNS = [
    "timestamp", "host", "cpu_count", "gpu", "gpu_count", "python", "torch", "torchvision", "ffcv",
]
MEASUREMENT_COLUMNS = [
    "bench",  # loader | model | epoch
    "pipeline",  # ffcv | pytorch | model | trainer
    "command",
    "res", "batch", "workers", "precision", "channels_last", "compile",
    "images_per_second",  # median over measured epochs (loader) / all measured steps (model)
    "images_per_second_min", "images_per_second_max", "runs",
    "ms_per_step", "peak_memory_mb", "memory_kind",
    "epoch_seconds", "extrapolated", "ratio", "verdict",
    "settings",  # JSON: everything else needed to reproduce the measurement
]
COLUMNS = ENVIRONMENT_COLUMNS + MEASUREMENT_COLUMNS


def recorded_path(path: str | PurePath, repo_root: str | PurePath = REPO_ROOT) -> str:
    """How a results row names a file or folder (images, beton) without any machine's absolute
    path: relative to the repository root when it lies under it, else only its own name.

    Pure: give absolute paths (the caller resolves them); a relative one counts as outside.
    """
    path, root = PurePath(path), PurePath(repo_root)
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def environment() -> dict[str, Any]:
    """Facts about this machine that a figure is meaningless without."""
    import torch

    from ffcv_inat.environment import package_version

    cuda = torch.cuda.is_available()
    return {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if cuda else "none",
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": package_version("torchvision") or "not installed",
        "ffcv": package_version("ffcv") or "not installed",
    }


def make_row(bench: str, pipeline: str, command: str, settings: dict[str, Any] | None = None,
             env: dict[str, Any] | None = None, **figures: Any) -> dict[str, Any]:
    """A full row: environment + the given figures; columns not given are left empty."""
    unknown = set(figures) - set(MEASUREMENT_COLUMNS)
    if unknown:
        raise ValueError(f"not results columns: {sorted(unknown)}")
    row = dict.fromkeys(COLUMNS, "")
    row.update(env if env is not None else environment())
    row.update(bench=bench, pipeline=pipeline, command=command,
               settings=json.dumps(settings or {}, sort_keys=True))
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
