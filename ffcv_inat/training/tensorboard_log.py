"""TensorBoard event files of a run (RUN_DIR/tensorboard/), written by rank 0 only.

One x axis for all, the run's training step (as Lightning's): per log step train/loss,
train/lr and train/images_per_second; at each epoch's last step the values of its log.jsonl
record: epoch/train_loss, epoch/seconds, epoch/images_per_second and, when it evaluated,
val/top1, val/top5, val/loss and val/acc_<supercategory>.

An epoch's scalars are flushed before its checkpoint is written. On --resume the writer starts
with a purge at the first step after the checkpoint's epoch: TensorBoard's reader then drops
whatever a killed attempt wrote past it, so each epoch shows once, as in log.jsonl.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The run dir's folder of event files (`tensorboard --logdir runs/` finds every run's).
TENSORBOARD_DIR = "tensorboard"

# log.jsonl keys -> tags of the per-epoch scalars.
EPOCH_TAGS = {
    "train_loss": "epoch/train_loss",
    "epoch_seconds": "epoch/seconds",
    "train_images_per_second": "epoch/images_per_second",
    "top1": "val/top1",
    "top5": "val/top5",
    "val_loss": "val/loss",
}
STEP_TAGS = ("train/loss", "train/lr", "train/images_per_second")


def epoch_scalars(record: dict) -> dict[str, float]:
    """{tag: value} of one log.jsonl record (keys it lacks or holds as null are left out)."""
    out = {tag: float(record[key]) for key, tag in EPOCH_TAGS.items() if record.get(key) is not None}
    for name, acc in sorted((record.get("per_supercategory") or {}).items()):
        if acc is not None:
            out[f"val/acc_{name}"] = float(acc)
    return out


def open_board(run_dir: Path, purge_from: int | None = None) -> "TensorBoardLog | None":
    """The run's TensorBoardLog; None, with one warning line, where the tensorboard package is
    missing (a declared dependency, but a cluster's or a GPU box's own environment may lack it):
    a run should not die for its event files."""
    try:
        return TensorBoardLog(run_dir, purge_from)
    except ImportError as e:
        print(
            f"warning: logging.tensorboard is on but TensorBoard cannot be imported ({str(e).splitlines()[0]}): "
            "no event files for this run (pip install tensorboard, or --set logging.tensorboard=false)",
            file=sys.stderr,
        )
        return None


class TensorBoardLog:
    """A SummaryWriter on RUN_DIR/tensorboard/. `purge_from`: the first step a resumed run
    trains (its reader forgets what earlier attempts wrote from there on); None on a new run."""

    def __init__(self, run_dir: Path, purge_from: int | None = None):
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when on

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR), purge_step=purge_from)

    def log_step(self, step: int, loss: float, lr: float, images_per_second: float | None) -> None:
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)
        if images_per_second is not None:
            self.writer.add_scalar("train/images_per_second", images_per_second, step)

    def log_epoch(self, record: dict, step: int) -> None:
        """The epoch's record at its last training step; on disk when this returns."""
        for tag, value in epoch_scalars(record).items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
