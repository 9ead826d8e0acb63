"""Tables (text) and plots (PNG) of results rows."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

from ffcv_inat import UserError


def _num(v, fmt: str = ",.0f") -> str:
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(float(v), fmt)


def _spread(row: dict) -> str:
    return (f"{_num(row['images_per_second'])} ({_num(row['images_per_second_min'])}-"
            f"{_num(row['images_per_second_max'])})")


def _text_table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in body]
    return "\n".join(lines)


def loader_table(rows: Iterable[dict]) -> str:
    """One line per resolution: both pipelines' median (min-max) images/s and their ratio."""
    by_res: dict[int, dict[str, dict]] = {}
    for r in rows:
        by_res.setdefault(int(r["res"]), {})[r["pipeline"]] = r
    body = []
    for res in sorted(by_res):
        pair = by_res[res]
        ffcv, torch_ = pair.get("ffcv"), pair.get("pytorch")
        ratio = ffcv.get("ratio") if ffcv else None
        body.append([str(res), _spread(ffcv) if ffcv else "-", _spread(torch_) if torch_ else "-",
                     f"{float(ratio):.2f}x" if ratio not in (None, "") else "-"])
    first = next(iter(next(iter(by_res.values())).values())) if by_res else {}
    title = (f"loader images/s, median (min-max) over {first.get('runs', '?')} measured epochs; "
             f"batch {first.get('batch', '?')}, {first.get('workers', '?')} workers, {first.get('cpu_count', '?')} CPUs, "
             f"GPU {first.get('gpu', '?')}")
    return title + "\n" + _text_table(["res", "ffcv", "pytorch ImageFolder+DataLoader", "ffcv / pytorch"], body)


def crop_decoder(row) -> str:
    """Which training-crop decoder a loader row timed: `settings.crop` of an ffcv row (seeded or
    ffcv; rows from before the seeded decoder existed timed ffcv's), torchvision for pytorch rows."""
    if row["pipeline"] != "ffcv":
        return "torchvision"
    settings = json.loads(row["settings"]) if isinstance(row["settings"], str) and row["settings"] else {}
    return settings.get("crop") or "ffcv"


def model_table(rows: Iterable[dict]) -> str:
    body = [[str(r["res"]), str(r["batch"]), str(r["precision"]), str(r["channels_last"]), str(r["compile"]),
             _spread(r), _num(r["ms_per_step"], ",.1f"), f"{_num(r['peak_memory_mb'])} ({r['memory_kind']})"]
            for r in rows]
    return "ResNet-50 train step on synthetic device tensors\n" + _text_table(
        ["res", "batch", "precision", "channels_last", "compile", "img/s (min-max)", "ms/step", "peak MB"], body)


REPORT_COLUMNS = ["timestamp", "host", "cpu_count", "gpu", "bench", "pipeline", "res", "batch", "workers",
                  "precision", "channels_last", "compile", "images_per_second", "images_per_second_min",
                  "images_per_second_max", "runs", "ms_per_step", "peak_memory_mb", "epoch_seconds", "extrapolated",
                  "ratio"]


def _cell(fmt: str):
    def f(v) -> str:
        if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
            return ""
        try:
            return format(float(v), fmt)
        except (TypeError, ValueError):
            return str(v)
    return f


def results_table(df) -> str:
    """Every row, the columns a reader compares (command, settings and verdicts stay in the CSV)."""
    view = df[REPORT_COLUMNS].copy()
    view["timestamp"] = view["timestamp"].astype(str).str.slice(0, 16)
    whole = {c: _cell(".0f") for c in ("cpu_count", "res", "batch", "workers", "runs", "peak_memory_mb")}
    figures = {c: _cell(",.1f") for c in ("images_per_second", "images_per_second_min", "images_per_second_max",
                                           "ms_per_step", "epoch_seconds")}
    text = view.astype(object).where(view.notna(), "").to_string(
        index=False, formatters={**whole, **figures, "ratio": _cell(".2f")})
    verdicts = df[df["verdict"].notna() & (df["verdict"].astype(str) != "")]
    for _, r in verdicts.iterrows():
        text += f"\n{str(r['timestamp'])[:16]} {r['host']} ({r['gpu']}): {r['verdict']}"
    return text


def _machine(row) -> str:
    return f"{row['gpu']}" if row["gpu"] != "none" else f"{row['host']} CPU x{row['cpu_count']}"


def _latest(df, keys: list[str]):
    """The last row (the file is in time order) for each combination of `keys`."""
    return df.drop_duplicates(subset=keys, keep="last")


def draw_plots(df, out_dir: str | Path) -> list[Path]:
    """loader_throughput.png and model_throughput.png (images/s by resolution) for the benches present."""
    from ffcv_inat.plots import save_png  # first: it selects matplotlib's headless backend

    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise UserError(f"--out: folder does not exist: {out_dir}")
    df = df.copy()
    df["machine"] = df.apply(_machine, axis=1)
    written = []

    loader = df[df["bench"] == "loader"].copy()
    loader["crop"] = loader.apply(crop_decoder, axis=1)
    loader = _latest(loader, ["machine", "pipeline", "crop", "res", "batch", "workers"])
    if len(loader):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (machine, pipeline, crop, batch, workers), g in loader.groupby(
                ["machine", "pipeline", "crop", "batch", "workers"]):
            g = g.sort_values("res")
            err = [g["images_per_second"] - g["images_per_second_min"], g["images_per_second_max"] - g["images_per_second"]]
            ax.errorbar(g["res"], g["images_per_second"], yerr=err, marker="o", capsize=3,
                        linestyle="-" if pipeline == "ffcv" else "--",
                        label=f"{pipeline} ({crop} crop): {machine}, batch {batch}, {workers} workers")
        ax.set(xlabel="resolution (px)", ylabel="images/s (median, min-max bars)",
               title="Training data pipeline throughput: FFCV vs PyTorch ImageFolder")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        written.append(save_png(fig, out_dir / "loader_throughput.png"))

    model = _latest(df[df["bench"] == "model"], ["machine", "res", "batch", "precision", "channels_last", "compile"])
    if len(model):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (machine, batch, precision, cl, comp), g in model.groupby(
                ["machine", "batch", "precision", "channels_last", "compile"]):
            g = g.sort_values("res")
            flags = ", ".join(f for f, on in (("channels-last", cl), ("compile", comp)) if str(on) == "True")
            ax.plot(g["res"], g["images_per_second"], marker="o",
                    label=f"{machine}, batch {batch}, {precision}" + (f", {flags}" if flags else ""))
        ax.set(xlabel="resolution (px)", ylabel="images/s", title="ResNet-50 training step (synthetic tensors)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        written.append(save_png(fig, out_dir / "model_throughput.png"))
    return written

