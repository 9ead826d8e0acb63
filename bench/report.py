"""Tables (text) and plots (PNG) of results rows."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

from ffcv_inat import UserError

from ffcv_inat.bench.machine import machine_name
from ffcv_inat.bench.stats import DecodeFigure, decode_verdict, ordered_decodes, target_verdict


def _num(v, fmt: str = ",.0f") -> str:
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(float(v), fmt)


def _spread(row: dict) -> str:
    return (
        f"{_num(row['images_per_second'])} ({_num(row['images_per_second_min'])}-{_num(row['images_per_second_max'])})"
    )


def _text_table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in body]
    return "\n".join(lines)


def _settings(row) -> dict:
    text = row["settings"]
    return json.loads(text) if isinstance(text, str) and text else {}


def decode_path(row) -> str | None:
    """Where a loader (ffcv) or epoch row decoded its JPEGs: `settings.decode`, "cpu" for rows
    from before the GPU data path existed; None for the PyTorch pipeline and other benches."""
    if row["pipeline"] not in ("ffcv", "trainer"):
        return None
    return _settings(row).get("decode") or "cpu"


def crop_decoder(row) -> str:
    """Which training-crop decoder a loader row timed: `settings.crop` of an ffcv row (seeded or
    ffcv; rows from before the seeded decoder existed timed ffcv's), dali for DALI's rows,
    torchvision for pytorch rows."""
    if row["pipeline"] == "dali":
        return "dali"
    if row["pipeline"] != "ffcv":
        return "torchvision"
    return _settings(row).get("crop") or "ffcv"


def _with_cores(row) -> str:
    cores = _settings(row).get("cores_used")
    return _spread(row) + (f" on {float(cores):.1f} cores" if cores is not None else "")


def describe_decode_counts(counts: dict) -> str:
    """The GPU path's DecodeCounts (as_dict, and first_failure where a batched call failed) in words."""
    text = ", ".join(
        f"{counts.get(k, 0):,} {name}"
        for k, name in (
            ("batched", "in the batched device call"),
            ("one_by_one", "one by one on the device"),
            ("cpu", "on the CPU (JPEGs the device does not take)"),
            ("raw", "raw (stored as pixels)"),
        )
    )
    if counts.get("first_failure"):
        text += f"; a batched call failed: {counts['first_failure']}"
    return text


PEER_COLUMNS = {"dali": "dali CPU pipeline", "pytorch": "pytorch ImageFolder+DataLoader"}


def loader_table(rows: Iterable[dict]) -> str:
    """One line per resolution: each ffcv decode path's, DALI's and the PyTorch pipeline's
    median (min-max) images/s with the CPU cores it kept busy, and each ffcv path / PyTorch."""
    rows = list(rows)
    by_res: dict[int, dict[str, dict]] = {}  # ffcv decode path, or a peer's name -> row
    for r in rows:
        key = decode_path(r) if r["pipeline"] == "ffcv" else r["pipeline"]
        by_res.setdefault(int(r["res"]), {})[key] = r
    peers = [p for p in PEER_COLUMNS if any(p in cells for cells in by_res.values())]
    decodes = ordered_decodes({d for cells in by_res.values() for d in cells if d not in PEER_COLUMNS})
    torch_ = "pytorch" in peers
    header = ["res", *(f"ffcv, {d} decode" for d in decodes), *(PEER_COLUMNS[p] for p in peers)]
    if torch_:
        header += [f"ffcv {d} / pytorch" for d in decodes]
    body = []
    for res in sorted(by_res):
        cells = by_res[res]
        line = [str(res), *(_with_cores(cells[k]) if k in cells else "-" for k in decodes + peers)]
        if torch_:
            line += [
                f"{float(cells[d]['ratio']):.2f}x"
                if d in cells and cells[d]["ratio"] not in (None, "") and not _nan(cells[d]["ratio"])
                else "-"
                for d in decodes
            ]
        body.append(line)
    first = rows[0] if rows else {}
    title = (
        f"loader images/s, median (min-max) over {first.get('runs', '?')} measured rounds, and the CPU cores "
        f"busy (median); batch {first.get('batch', '?')}, {first.get('workers', '?')} workers, "
        f"{first.get('cpu_count', '?')} CPUs, GPU {first.get('gpu', '?')}"
    )
    return title + "\n" + _text_table(header, body)


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def decode_figures(rows: Iterable[dict], bench: str) -> dict[int, dict[str, DecodeFigure]]:
    """{res: {decode path: figure}} of one run's ffcv loader rows (the seeded crop decoder's: the
    GPU path has no other) or epoch rows (`bench`)."""
    figures: dict[int, dict[str, DecodeFigure]] = {}
    for r in rows:
        if r["bench"] != bench or decode_path(r) is None or (bench == "loader" and crop_decoder(r) != "seeded"):
            continue
        cores = _settings(r).get("cores_used")
        figures.setdefault(int(r["res"]), {})[decode_path(r)] = DecodeFigure(
            float(r["images_per_second"]), None if cores is None else float(cores)
        )
    return figures


def decode_conclusion(rows: Iterable[dict]) -> list[str]:
    """What one machine's rows say about the decode path: which to use (by end-to-end throughput
    when epoch rows compare the paths, else by the loader alone), and whether the GPU path meets
    its target (loader rows at the target resolution). Empty when nothing compares."""
    rows = list(rows)
    epoch, loader = decode_figures(rows, "epoch"), decode_figures(rows, "loader")
    verdict = decode_verdict(epoch, "end-to-end throughput") or decode_verdict(
        loader, "loader throughput alone (no end-to-end figures)"
    )
    lines = [f"decode verdict: {verdict}"] if verdict else []
    if any("gpu" in f for f in loader.values()):
        target = target_verdict(loader)
        if target:
            lines.append(target)
    return lines


def _latest_runs(rows: list[dict], bench: str) -> list[dict]:
    """The rows of the newest `bench` run (rows of one command share its timestamp and command
    line) that measured the GPU decode path; [] if none did."""
    runs: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["bench"] == bench:
            runs.setdefault((r["timestamp"], r["command"]), []).append(r)
    with_gpu = [run for run in runs.values() if any(decode_path(r) == "gpu" for r in run)]
    return with_gpu[-1] if with_gpu else []


def model_table(rows: Iterable[dict]) -> str:
    body = [
        [
            str(r["res"]),
            str(r["batch"]),
            str(r["precision"]),
            str(r["channels_last"]),
            str(r["compile"]),
            _spread(r),
            _num(r["ms_per_step"], ",.1f"),
            f"{_num(r['peak_memory_mb'])} ({r['memory_kind']})",
        ]
        for r in rows
    ]
    return "ResNet-50 train step on synthetic device tensors\n" + _text_table(
        ["res", "batch", "precision", "channels_last", "compile", "img/s (min-max)", "ms/step", "peak MB"], body
    )


REPORT_COLUMNS = [
    "timestamp",
    "host",
    "cpu_count",
    "gpu",
    "bench",
    "pipeline",
    "res",
    "batch",
    "workers",
    "precision",
    "channels_last",
    "compile",
    "images_per_second",
    "images_per_second_min",
    "images_per_second_max",
    "runs",
    "ms_per_step",
    "peak_memory_mb",
    "epoch_seconds",
    "extrapolated",
    "ratio",
]


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
    """Every row, the columns a reader compares (command, settings and verdicts stay in the CSV;
    `decode`, the decode path of ffcv and trainer rows, comes from settings)."""
    view = df[REPORT_COLUMNS].copy()
    records = df.to_dict("records")
    view.insert(REPORT_COLUMNS.index("pipeline") + 1, "decode", [decode_path(r) or "" for r in records])
    view["of_ceiling"] = [_ceiling_share(r) for r in records]  # loader rows: share of this machine's ceiling
    view["timestamp"] = view["timestamp"].astype(str).str.slice(0, 16)
    whole = {c: _cell(".0f") for c in ("cpu_count", "res", "batch", "workers", "runs", "peak_memory_mb")}
    figures = {
        c: _cell(",.1f")
        for c in ("images_per_second", "images_per_second_min", "images_per_second_max", "ms_per_step", "epoch_seconds")
    }
    text = (
        view.astype(object)
        .where(view.notna(), "")
        .to_string(index=False, formatters={**whole, **figures, "ratio": _cell(".2f")})
    )
    verdicts = df[df["verdict"].notna() & (df["verdict"].astype(str) != "")]
    for _, r in verdicts.iterrows():
        text += f"\n{str(r['timestamp'])[:16]} {r['host']} ({r['gpu']}): {r['verdict']}"
    for machine in dict.fromkeys(machine_name(r) for r in records):
        mine = [r for r in records if machine_name(r) == machine]
        runs = _latest_runs(mine, "epoch") + _latest_runs(mine, "loader")
        for line in decode_conclusion(runs):
            text += f"\n{machine}, newest runs with the GPU decode path: {line}"
    return text


def _ceiling_share(row) -> str:
    """A loader row's median as a share of its machine's decode + resize ceiling (settings.ceiling),
    e.g. "72%"; empty for other rows and rows from before the ceiling."""
    c = _settings(row).get("ceiling") if row["bench"] == "loader" else None
    return f"{100 * c['fraction']:.0f}%" if c else ""


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
    df["machine"] = df.apply(machine_name, axis=1)
    written = []

    loader = df[df["bench"] == "loader"].copy()
    loader["crop"] = loader.apply(crop_decoder, axis=1)
    loader["decode"] = loader.apply(lambda r: decode_path(r) or "cpu", axis=1)  # PyTorch decodes on the CPU
    # real photos and synthetic images are separate lines: they decode at different speeds
    loader["images"] = loader.apply(lambda r: _settings(r).get("images_label") or "images unlabelled", axis=1)
    loader = _latest(loader, ["machine", "images", "pipeline", "crop", "decode", "res", "batch", "workers"])
    if len(loader):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (machine, images, pipeline, crop, decode, batch, workers), g in loader.groupby(
            ["machine", "images", "pipeline", "crop", "decode", "batch", "workers"]
        ):
            g = g.sort_values("res")
            err = [
                g["images_per_second"] - g["images_per_second_min"],
                g["images_per_second_max"] - g["images_per_second"],
            ]
            ax.errorbar(
                g["res"],
                g["images_per_second"],
                yerr=err,
                marker="o",
                capsize=3,
                linestyle="-" if pipeline == "ffcv" else "--",
                label=f"{pipeline} ({crop} crop, {decode} decode): {machine}, {images}, batch {batch}, "
                f"{workers} workers",
            )
        ax.set(
            xlabel="resolution (px)",
            ylabel="images/s (median, min-max bars)",
            title="Training data pipeline throughput: FFCV vs PyTorch ImageFolder",
        )
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        written.append(save_png(fig, out_dir / "loader_throughput.png"))

    model = _latest(df[df["bench"] == "model"], ["machine", "res", "batch", "precision", "channels_last", "compile"])
    if len(model):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (machine, batch, precision, cl, comp), g in model.groupby(
            ["machine", "batch", "precision", "channels_last", "compile"]
        ):
            g = g.sort_values("res")
            flags = ", ".join(f for f, on in (("channels-last", cl), ("compile", comp)) if str(on) == "True")
            ax.plot(
                g["res"],
                g["images_per_second"],
                marker="o",
                label=f"{machine}, batch {batch}, {precision}" + (f", {flags}" if flags else ""),
            )
        ax.set(xlabel="resolution (px)", ylabel="images/s", title="ResNet-50 training step (synthetic tensors)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        written.append(save_png(fig, out_dir / "model_throughput.png"))
    return written
