"""Writing matplotlib figures to PNG files: headless (Agg) and atomic, for every command that plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on cluster nodes or in CI
import matplotlib.pyplot as plt  # noqa: E402

from .atomic import atomic_outputs  # noqa: E402

DPI = 120


def save_png(fig, out: str | Path, dpi: int = DPI) -> Path:
    """Write the figure atomically (a reader never sees half a PNG) and close it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:
        with atomic_outputs(out) as (tmp,):
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return out
