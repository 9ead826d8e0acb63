"""The run directory's files: their names (one place) and how they are read.

    config.yaml            the resolved config (written first)
    log.jsonl              one line per completed epoch
    checkpoints/last.pt    everything --resume needs
    checkpoints/best.pt    the same, of the epoch with the best top-1 (when the run evaluates)
    checkpoints/epoch_N.pt the same, after every checkpoint.keep_every-th epoch
    tensorboard/           TensorBoard event files (logging.tensorboard)
    per_class.csv          per-class accuracy of the final evaluation
    summary.json           final metrics and provenance, written last: its presence means done

`read_summary` is the one reader of summary.json for everything that asks "is this run done?"
(`ffcv-sweep status` / `run`, `ffcv-analyze`), so they always agree: a missing file means not
done; a file that cannot be read, is not JSON (corrupt, or cut short by a copy) or lacks the
final metrics also means not done, and is reported once per path and process on stderr
instead of aborting the command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import UserError

CONFIG = "config.yaml"
LOG = "log.jsonl"
CHECKPOINT = "checkpoints/last.pt"
BEST_CHECKPOINT = "checkpoints/best.pt"
PER_CLASS = "per_class.csv"
SUMMARY = "summary.json"
# Keys without which a summary.json is not a finished run's (the trainer writes them last).
SUMMARY_REQUIRED = ("top1",)


def checkpoint_of(run_dir: str | Path) -> Path:
    """RUN_DIR/checkpoints/last.pt: what a finetune or probe takes as `--init`."""
    return Path(run_dir) / CHECKPOINT


def kept_checkpoint(run_dir: str | Path, epoch: int) -> Path:
    """RUN_DIR/checkpoints/epoch_N.pt, the checkpoint kept after epoch N (1-based)."""
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch:03d}.pt"


def run_dir_of(checkpoint: str | Path) -> Path:
    """The run directory whose last.pt `checkpoint` is (inverse of checkpoint_of)."""
    path = Path(checkpoint)
    for _ in Path(CHECKPOINT).parts:
        path = path.parent
    return path


_reported: set[str] = set()  # summary.json paths already warned about in this process


def read_summary(run_dir: str | Path) -> dict | None:
    """RUN_DIR/summary.json as a dict, or None when the run is not done.

    None without a word when there is no summary.json; None with one warning line on stderr
    (the first time this process meets that path) when it is unreadable, not a JSON object,
    or lacks the final metrics (SUMMARY_REQUIRED).
    """
    path = Path(run_dir) / SUMMARY
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        return _not_done(path, f"cannot be read ({e.strerror or e})")
    try:
        summary = json.loads(text)
    except ValueError as e:
        return _not_done(path, f"is not valid JSON ({e})" if text.strip() else "is empty")
    if not isinstance(summary, dict):
        return _not_done(path, f"is a JSON {type(summary).__name__}, not an object")
    missing = [k for k in SUMMARY_REQUIRED if k not in summary]
    if missing:
        return _not_done(path, f"lacks {', '.join(missing)}")
    return summary


def read_log(run_dir: str | Path) -> list[dict]:
    """RUN_DIR/log.jsonl, one record per finished epoch ([] when no epoch has finished);
    a line that is not JSON is a one-line UserError naming the file."""
    path = Path(run_dir) / LOG
    if not path.is_file():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError as e:
                raise UserError(f"{path}:{n}: not a JSON line ({e})") from None
    return records


def _not_done(path: Path, why: str) -> None:
    key = str(path.resolve())
    if key not in _reported:
        _reported.add(key)
        print(f"warning: {path} {why}: the run counts as not done", file=sys.stderr)
    return None
