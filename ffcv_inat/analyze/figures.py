"""The paper's figures as PNGs, drawn from table.py's tables.

Each function takes a table, writes one PNG and returns its path; none reads run dirs itself.
`caption` (e.g. "synthetic data, smoke grid") is a second title line on every figure, so a
figure made from a demo or a slice says so wherever it is copied.
"""

from __future__ import annotations

from pathlib import Path

from ..plots import save_png  # first: it selects matplotlib's headless Agg backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..study import ANIMAL_SHARE  # noqa: E402
from .table import curve_points, reference_levels  # noqa: E402

FAMILY_STYLE = {
    "A": dict(color="tab:green", marker="o", label="ImageNet-A-k (animal classes)"),
    "NA": dict(color="tab:orange", marker="s", label="ImageNet-NA-k (non-animal classes)"),
    "R": dict(color="tab:blue", marker="^", label="ImageNet-R-k (random classes)"),
}
REF_STYLE = {
    "full ImageNet": dict(color="black", linestyle="--"),
    "no pretraining": dict(color="tab:red", linestyle=":"),
}


def np_nanmax(a) -> float:
    return float(np.nanmax(a)) if np.isfinite(a).any() else 0.0


def _draw_curves(ax, points: pd.DataFrame, families=("A", "NA", "R"), x_scale: dict | None = None) -> None:
    for fam in families:
        p = points[points["family"] == fam]
        if p.empty:
            continue
        style = dict(FAMILY_STYLE[fam])
        x = p["x"].astype(float) * (x_scale or {}).get(fam, 1.0)
        if (x_scale or {}).get(fam, 1.0) != 1.0:
            style["label"] += f", x × {x_scale[fam]:.3f}"
        ax.errorbar(x, 100 * p["mean"], yerr=100 * p["std"], capsize=3, linewidth=1.8, markersize=6, **style)


def _draw_refs(ax, refs: dict[str, float]) -> None:
    for name, level in refs.items():
        ax.axhline(100 * level, label=f"{name} ({100 * level:.1f}%)", linewidth=1.4, **REF_STYLE[name])


def _log_x_if_wide(ax, xs) -> None:
    """Log x when k spans over 20x (a smoke grid's 8 vs 1000), so small-k points stay apart."""
    xs = [float(x) for x in xs if x and float(x) > 0]
    if xs and max(xs) / min(xs) > 20:
        ax.set_xscale("log")


def _title(ax, title: str, caption: str = "") -> None:
    ax.set_title(f"{title}\n{caption}" if caption else title, fontsize=11 if caption else None)


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} runs yet", ha="center", va="center", transform=ax.transAxes, color="gray")


def accuracy_vs_classes(df: pd.DataFrame, kind: str, out: Path, title: str, ylabel: str, caption: str = "") -> Path:
    """Figures 3 (kind=finetune) and 4 (kind=linear): top-1 vs #pretraining classes per family."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    points = curve_points(df, kind)
    if points.empty:
        _no_data(ax, kind)
    _draw_curves(ax, points)
    _draw_refs(ax, reference_levels(df, kind))
    _log_x_if_wide(ax, points["x"] if not points.empty else [])
    ax.set_xlabel("number of ImageNet classes in pretraining")
    ax.set_ylabel(ylabel)
    _title(ax, title, caption)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    return save_png(fig, out)


def figure3(df: pd.DataFrame, out: Path, caption: str = "") -> Path:
    return accuracy_vs_classes(
        df, "finetune", out, "Figure 3: finetuned on iNat-Mini-A", "top-1 accuracy on iNat-Mini-A eval (%)", caption
    )


def figure4(df: pd.DataFrame, out: Path, caption: str = "") -> Path:
    return accuracy_vs_classes(
        df, "linear", out, "Figure 4: linear probe on ImageNet-A", "top-1 accuracy on ImageNet-A val (%)", caption
    )


def figure6(df: pd.DataFrame, out: Path, caption: str = "") -> Path:
    """R's curves against the expected number of animal classes (0.398 k), beside A's."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, kind, what in (
        (axes[0], "finetune", "finetuned on iNat-Mini-A"),
        (axes[1], "linear", "linear probe on ImageNet-A"),
    ):
        points = curve_points(df, kind)
        if points[points["family"].isin(["A", "R"])].empty:
            _no_data(ax, kind)
        _draw_curves(ax, points, families=("A", "R"), x_scale={"R": ANIMAL_SHARE})
        _draw_refs(ax, reference_levels(df, kind))
        ax.set_xlabel("number of animal classes in pretraining (expected for R-k)")
        ax.set_ylabel("top-1 accuracy (%)")
        _title(ax, f"Figure 6: {what}", caption)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    return save_png(fig, out)


def figure2(table: pd.DataFrame, out: Path, caption: str = "") -> Path:
    """Per-supercategory iNat-Mini-A accuracy: scratch vs pretrained models (grouped bars)."""
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * max(len(table), 1) + 2), 4.6))
    if table.empty:
        _no_data(ax, "finetune or scratch")
    else:
        n = len(table.columns)
        width = 0.8 / n
        x = np.arange(len(table))
        colors = ["tab:red", "black", "tab:green", "tab:orange", "tab:blue"]
        for i, col in enumerate(table.columns):
            ax.bar(
                x + (i - (n - 1) / 2) * width,
                100 * table[col].to_numpy(dtype=float),
                width,
                label=col,
                color=colors[i % len(colors)],
                alpha=0.85,
            )
        ax.set_xticks(x)
        ax.set_xticklabels(table.index, rotation=30, ha="right")
        top = float(np_nanmax(100 * table.to_numpy(dtype=float)))
        ax.set_ylim(0, max(1.0, top) * 1.3)  # headroom so the legend never hides a bar
        ax.legend(fontsize=8, ncol=2, loc="upper center")
    ax.set_xlabel("iNat supercategory")
    ax.set_ylabel("top-1 accuracy on iNat-Mini-A eval (%)")
    _title(ax, "Figure 2: per-supercategory accuracy, pretrained vs scratch", caption)
    ax.grid(axis="y", alpha=0.3)
    return save_png(fig, out)


def figure1(joined: pd.DataFrame, out: Path, pretrained_label: str, caption: str = "") -> Path:
    """Per-species gain from pretraining vs the species' representation in ImageNet."""
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    if joined.empty:
        _no_data(ax, "matching species")
    for fam, g in sorted(joined.groupby("family"), key=lambda t: str(t[0])):
        ax.scatter(g["imagenet_images"], 100 * g["gain"], s=22, alpha=0.75, label=str(fam))
    ax.axhline(0, color="gray", linewidth=1)
    if not joined.empty and (joined["imagenet_images"] > 0).any():
        # symlog: species with no ImageNet images (0) stay on the axis beside the log range.
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(-0.3, float(joined["imagenet_images"].max()) * 2)
    ax.set_xlabel("ImageNet images representing the species")
    ax.set_ylabel(f"pretraining gain, {pretrained_label} − scratch (points of top-1 %)")
    _title(ax, "Figure 1: per-species gain from pretraining", caption)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, title="family", loc="best")
    return save_png(fig, out)
