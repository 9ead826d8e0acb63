"""What a whole recipe will cost: epochs x images per epoch / measured images per second."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ffcv_inat import UserError

from ffcv_inat.bench.report import decode_path
from ffcv_inat.bench.machine import card_name, is_cpu_device, machine_name
from ffcv_inat.bench.stats import CostPrediction, predict_cost


@dataclass(frozen=True)
class RecipeFacts:
    recipe: str
    epochs: int
    batch: int
    res: int
    decode: str = "cpu"  # the recipe's data.decode (cpu, gpu, auto): which epoch rows apply


def recipe_facts(recipe: str, sets: list[str]) -> RecipeFacts:
    from ffcv_inat.config import load_config

    cfg = load_config(recipe, list(sets))
    return RecipeFacts(cfg.recipe, cfg.schedule.epochs, cfg.data.batch_size, cfg.data.res, cfg.data.decode)


def images_per_epoch(images: int | None, beton: str | None) -> int:
    if (images is None) == (beton is None):
        raise UserError("give exactly one of --images-per-epoch N and --train B.beton")
    if beton is not None:
        from ffcv_inat.beton import read_manifest

        return read_manifest(beton).num_images
    if images < 1:
        raise UserError(f"--images-per-epoch must be at least 1, got {images}")
    return images


@dataclass(frozen=True)
class Measured:
    images_per_second: float
    source: str  # where the figure came from, printed with the prediction
    gpus: int
    gpu: str | None = None  # the device it ran on: a GPU's name, "none" (CPU), or None (not known)


def latest_epoch_throughput(df, facts: RecipeFacts, machine: str | None = None) -> Measured:
    """The newest `ffcv-bench epoch` row of this recipe at its batch and resolution, timed with
    the decode path the recipe would use on that row's machine (data.decode; auto = gpu on a GPU).

    `machine` keeps rows whose GPU name or host contains it (e.g. "H100").
    """
    rows = df[(df["bench"] == "epoch") & (df["batch"] == facts.batch) & (df["res"] == facts.res)]
    if machine:
        m = machine.lower()
        rows = rows[
            rows["gpu"].astype(str).str.lower().str.contains(m, regex=False)
            | rows["host"].astype(str).str.lower().str.contains(m, regex=False)
        ]
    name = Path(facts.recipe).name
    rows = rows[[Path(json.loads(s).get("recipe", "")).name == name for s in rows["settings"]]]
    rows = rows[[decode_path(r) == _decode_on(facts.decode, r["gpu"]) for r in rows.to_dict("records")]]
    if rows.empty:
        where = f" on a machine matching {machine!r}" if machine else ""
        raise UserError(
            f"no epoch results for {name} at batch {facts.batch}, res {facts.res}, data.decode "
            f"{facts.decode}{where}: run "
            f"`ffcv-bench epoch --recipe {name} --train B.beton --max-steps 100` first, "
            "or pass --images-per-second"
        )
    r = rows.iloc[-1]
    return Measured(
        float(r["images_per_second"]),
        f"ffcv-bench epoch of {str(r['timestamp'])[:16]} on {machine_name(r)}",
        max(1, int(r["gpu_count"]) if str(r["gpu_count"]) not in ("", "nan") else 1),
        str(r["gpu"]),
    )


def _decode_on(decode: str, gpu) -> str:
    """The decode path `decode` (data.decode) resolves to on a row's device."""
    from ffcv_inat.loader import auto_decode

    return auto_decode(not is_cpu_device(gpu)) if decode == "auto" else decode


def hours_on_device(p: CostPrediction, gpu: str | None) -> str:
    """The predicted hours in the unit of the device whose throughput gave them: "hours on this
    CPU" for a CPU figure, "<card>-hours" (e.g. H100-hours) for a GPU's, device-hours if unknown."""
    if gpu is not None and is_cpu_device(gpu):
        return f"{p.hours:,.2f} hours on this CPU"
    card = card_name(gpu)
    if card:
        return f"{p.hours:,.2f} hours wall, {p.device_hours:,.2f} {card}-hours on {p.gpus} x {card}"
    return (
        f"{p.hours:,.2f} hours wall, {p.device_hours:,.2f} device-hours on {p.gpus} device(s) "
        "(--machine names the device)"
    )


def describe(facts: RecipeFacts, p: CostPrediction, source: str, gpu: str | None = None) -> str:
    return (
        f"{Path(facts.recipe).name}: {p.epochs} epochs x {p.images_per_epoch:,} images / "
        f"{p.images_per_second:,.1f} img/s ({source})\n"
        f"= {p.seconds:,.0f} s = {hours_on_device(p, gpu)}"
    )


def predict(facts: RecipeFacts, n_images: int, measured: Measured, gpus: int | None) -> CostPrediction:
    try:
        return predict_cost(facts.epochs, n_images, measured.images_per_second, gpus or measured.gpus)
    except ValueError as e:
        raise UserError(str(e)) from None
