"""The speed an `ffcv-train` run recorded: epoch seconds, images/s, peak GPU memory.

    ffcv-bench train-run RUN_DIR [--label compile=true] [--rows ROWS.jsonl]

Reads the run directory's `log.jsonl` (one line per finished epoch) and `summary.json`
(absent when the run was stopped before its end: the epochs it logged still count). The
first epoch pays for numba's compilation of the loader, cudnn autotuning and
`torch.compile`, so the steady figure is the median (min, max) of images/s over the epochs
after it. `bench/gpu/device_run.sh`'s `train` step runs it after each training run.
"""

from __future__ import annotations

from pathlib import Path


from ffcv_inat import UserError
from ffcv_inat.rundir import LOG, read_log, read_summary

from ffcv_inat.bench.stats import spread


def train_throughput(run_dir: str | Path, label: str | None = None) -> dict:
    """One JSON-able record of a run's speed; refuses a run dir without a logged epoch."""
    run = Path(run_dir)
    log = read_log(run)
    if not log:
        raise UserError(f"{run}: no epoch logged in {LOG} (did the run start?)")
    summary = read_summary(run) or {}  # none: the run was stopped before its end
    steady = [e["train_images_per_second"] for e in log[1:] if e.get("train_images_per_second")]
    s = spread(steady) if steady else None
    return {
        "label": label,
        "run_dir": str(run),
        "epochs": len(log),
        "finished": bool(summary),
        "epoch_seconds": [e["epoch_seconds"] for e in log],
        "images_per_second": [e.get("train_images_per_second") for e in log],
        "steady_images_per_second": s.median if s else None,
        "steady_images_per_second_min": s.min if s else None,
        "steady_images_per_second_max": s.max if s else None,
        "peak_gpu_memory_mb": summary.get("peak_gpu_memory_mb"),
        **{
            k: summary.get(k)
            for k in ("recipe", "device", "precision", "compile", "channels_last", "batch_size", "wall_seconds")
        },
    }


def describe(r: dict) -> str:
    head = f"{r['label']}: " if r["label"] else ""
    lines = [
        f"{head}{r['epochs']} epochs{'' if r['finished'] else ' (run stopped before its end)'}; "
        f"epoch seconds {[round(s, 2) for s in r['epoch_seconds']]}"
    ]
    if r["steady_images_per_second"] is not None:
        lines.append(
            f"  images/s after epoch 1: median {r['steady_images_per_second']:,.0f} "
            f"(min {r['steady_images_per_second_min']:,.0f}, max {r['steady_images_per_second_max']:,.0f})"
        )
    else:
        lines.append("  images/s after epoch 1: - (only one epoch logged)")
    peak = r["peak_gpu_memory_mb"]
    lines.append(
        f"  peak GPU memory {'-' if peak is None else f'{peak:,.0f} MiB'}; device {r['device'] or '-'}; "
        f"precision {r['precision'] or '-'}; compile {r['compile']}"
    )
    return "\n".join(lines)
