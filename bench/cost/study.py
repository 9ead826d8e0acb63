"""What the whole study of a plan will cost (`ffcv-bench cost --plan PLAN.csv`): each training
run's predicted hours from the newest measured rows of one machine, the device-hours of the
grid, and its wall time on N devices with the plan's dependencies.

A run's hours = recipe epochs x training images per epoch / images per second, where
  images per epoch  the run's train beton manifest when it exists, else the dataset's known
                    size: ImageNet-1k's mean of 1,281.167 train images per class x the classes
                    of its subset, iNat-2021 mini's 50 per species x its 5,388 animal species
  images per second the newest `ffcv-bench epoch` row of the run's recipe at its batch and
                    resolution on the machine; else the newest epoch row of any recipe at that
                    resolution; else the slower of the newest model-alone and loader-alone rows
                    at that resolution; each figure says which row it came from.
Beton and data rows are CPU jobs before training: not priced. Evaluation passes are not counted.

On a cluster shape (`--gpus-per-run KIND=N --cluster NODESxGPUS`) a run of g GPUs is assumed to
take 1/g of its one-GPU time (linear scaling, SCALING; no multi-GPU epoch is on record to
measure it): its device-hours stay those of one GPU, and the grid's wall time is a list
schedule of runs that each hold their g GPUs on one node until they end.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ffcv_inat import UserError
from ffcv_inat.study import INAT_ANIMAL_SPECIES, INAT_MINI_PER_SPECIES, num_pretrain_classes, planned_images

from ffcv_inat.bench.machine import is_cpu_device, machine_name

ASSUMED_IMAGENET = "ImageNet-1k's 1,281.2 train images per class x the subset's classes"
ASSUMED_INAT = f"iNat-2021 mini's {INAT_MINI_PER_SPECIES} images per species x {INAT_ANIMAL_SPECIES:,} animal species"


@dataclass(frozen=True)
class Rate:
    images_per_second: float
    source: str  # which row, and how it was chosen


@dataclass(frozen=True)
class RunCost:
    run_id: str
    kind: str
    recipe: str
    epochs: int
    images_per_epoch: int
    images_source: str  # "manifest" or what was assumed
    rate: Rate
    depends_on: tuple

    @property
    def hours(self) -> float:
        return self.epochs * self.images_per_epoch / self.rate.images_per_second / 3600


def assumed_images(dataset: str, classes: int) -> int:
    """Training images of a beton not written yet, from the dataset's known size."""
    return planned_images(dataset, "train", classes)


def beton_images(beton_row) -> tuple[int, str]:
    """(images, where the count comes from) of a plan's beton row: its manifest if written."""
    from ffcv_inat.classes import NUM_IMAGENET_CLASSES
    from ffcv_inat.beton import read_manifest

    path = Path(beton_row.outputs)
    if path.with_suffix(".json").is_file():
        return read_manifest(path).num_images, "manifest"
    dataset = beton_row.options.get("dataset", "imagenet")
    if dataset == "imagenet":
        classes = num_pretrain_classes(beton_row.subset, beton_row.k) or NUM_IMAGENET_CLASSES
        return assumed_images(dataset, classes), ASSUMED_IMAGENET
    return assumed_images(dataset, INAT_ANIMAL_SPECIES), ASSUMED_INAT


def wall_hours(hours: Mapping[str, float], depends_on: Mapping[str, Sequence[str]], devices: int) -> float:
    """Wall time of runs with dependencies on `devices` devices, one run per device, each run
    started as soon as its dependencies are done and a device is free, in the given order
    (a greedy list schedule). Dependencies outside `hours` (betons) count as done."""
    if devices < 1:
        raise ValueError(f"devices must be at least 1, got {devices}")
    finish: dict[str, float] = {}
    free = [0.0] * devices
    pending = list(hours)
    while pending:
        ready = [r for r in pending if all(d in finish or d not in hours for d in depends_on.get(r, ()))]
        if not ready:
            raise ValueError(f"dependency cycle among {pending}")
        # among ready runs, the one whose dependencies finish first
        run = min(ready, key=lambda r: max((finish[d] for d in depends_on.get(r, ()) if d in finish), default=0.0))
        start = max(heapq.heappop(free), max((finish[d] for d in depends_on.get(run, ()) if d in finish), default=0.0))
        finish[run] = start + hours[run]
        heapq.heappush(free, finish[run])
        pending.remove(run)
    return max(finish.values(), default=0.0)


SCALING = (
    "assumed: a run on g GPUs takes 1/g of its one-GPU time (linear scaling, an upper bound on the speed-up; "
    "not measured here)"
)


@dataclass(frozen=True)
class ClusterShape:
    nodes: int
    gpus_per_node: int

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    def describe(self) -> str:
        return f"{self.nodes} node{'s' if self.nodes != 1 else ''} x {self.gpus_per_node} GPUs"


def parse_cluster(text: str) -> ClusterShape:
    """'4x8' -> 4 nodes of 8 GPUs; anything else is one line naming the option."""
    nodes, sep, gpus = text.lower().partition("x")
    if not sep or not nodes.strip().isdigit() or not gpus.strip().isdigit() or min(int(nodes), int(gpus)) < 1:
        raise UserError(f"--cluster {text}: expected NODESxGPUS, e.g. 4x8 (4 nodes of 8 GPUs)")
    return ClusterShape(int(nodes), int(gpus))


def cluster_wall_hours(
    hours: Mapping[str, float], gpus: Mapping[str, int], depends_on: Mapping[str, Sequence[str]], shape: ClusterShape
) -> float:
    """Wall time of runs with dependencies on `shape`: run r holds gpus[r] GPUs of one node for
    hours[r] / gpus[r] (SCALING); in the given order, each run starts as soon as what it depends on
    is done and a node has its GPUs free. Dependencies outside `hours` (betons) count as done."""
    for run, g in gpus.items():
        if not 1 <= g <= shape.gpus_per_node:
            raise UserError(f"{run} asks for {g} GPUs but a node of {shape.describe()} has {shape.gpus_per_node}")
    free = [shape.gpus_per_node] * shape.nodes
    running: list[tuple[float, str, int]] = []  # (finish, run, node)
    finish: dict[str, float] = {}
    pending, now = list(hours), 0.0
    while pending:
        started = False
        for run in pending:
            if any(d in hours and (d not in finish or finish[d] > now) for d in depends_on.get(run, ())):
                continue
            node = next((n for n, f in enumerate(free) if f >= gpus[run]), None)
            if node is None:
                continue
            free[node] -= gpus[run]
            finish[run] = now + hours[run] / gpus[run]
            heapq.heappush(running, (finish[run], run, node))
            pending.remove(run)
            started = True
            break
        if started:
            continue
        if not running:
            raise ValueError(f"dependency cycle among {pending}")
        done_at, run, node = heapq.heappop(running)
        now = max(now, done_at)
        free[node] += gpus[run]
    return max(finish.values(), default=0.0)


def machine_rows(df, machine: str | None):
    """The rows of the machine named (GPU name or host contains `machine`); without a name, of
    the machine of the newest GPU row, else of the newest row. (rows, what the choice was)."""
    if df.empty:
        raise UserError("no measured rows: run ffcv-bench epoch (or model and loader) on the machine first")
    if machine:
        m = machine.lower()
        keep = df["gpu"].astype(str).str.lower().str.contains(m, regex=False) | df["host"].astype(
            str
        ).str.lower().str.contains(m, regex=False)
        if not keep.any():
            raise UserError(f"--machine {machine}: no measured row's GPU name or host contains it")
        return df[keep], f"rows whose GPU or host matches {machine!r}"
    gpu_rows = df[[not is_cpu_device(g) for g in df["gpu"]]]
    newest = (gpu_rows if not gpu_rows.empty else df).iloc[-1]
    rows = df[(df["host"] == newest["host"]) & (df["gpu"] == newest["gpu"])]
    why = "the newest GPU machine measured" if not gpu_rows.empty else "no GPU row measured: the newest machine"
    return rows, why


def _describe_row(r, what: str) -> str:
    return f"{what} of {str(r['timestamp'])[:16]} on {machine_name(r)}"


def run_rate(rows, recipe: str, batch: int, res: int) -> Rate:
    """Images/s a training run of `recipe` at `batch`, `res` gets on the machine of `rows`."""
    at_res = rows[rows["res"] == res]
    epoch = at_res[at_res["bench"] == "epoch"]
    same = epoch[epoch["batch"] == batch]
    same = same[[Path(json.loads(s).get("recipe", "")).name == Path(recipe).name for s in same["settings"]]]
    for candidates, what in (
        (same, "ffcv-bench epoch of this recipe"),
        (epoch, "ffcv-bench epoch of another recipe at this resolution (assumed alike)"),
    ):
        if not candidates.empty:
            r = candidates.iloc[-1]
            return Rate(float(r["images_per_second"]), _describe_row(r, what))
    model, loader = (
        at_res[at_res["bench"] == "model"],
        at_res[(at_res["bench"] == "loader") & (at_res["pipeline"] == "ffcv")],
    )
    if model.empty and loader.empty:
        raise UserError(
            f"no epoch, model or loader row at res {res} on this machine: measure it first "
            f"(ffcv-bench epoch --recipe {Path(recipe).name} ...)"
        )
    parts = [
        (float(t.iloc[-1]["images_per_second"]), _describe_row(t.iloc[-1], name))
        for t, name in ((model, "model alone"), (loader, "loader alone"))
        if not t.empty
    ]
    rate, source = min(parts)
    if len(parts) == 1:
        missing = "model" if model.empty else "loader"
        return Rate(
            rate,
            f"{source} (no end-to-end row and no {missing}-alone row: training is at most this fast, "
            "so its hours are a lower bound)",
        )
    return Rate(rate, f"{source}, the slower of model alone and loader alone (no end-to-end row)")


def study_costs(plan_rows: Sequence, df, machine: str | None) -> tuple[list[RunCost], str]:
    """Every training run's cost, and which machine's rows priced them."""
    from ffcv_inat.config import load_config
    from ffcv_inat.sweep.plan import TRAIN_KINDS

    rows, why = machine_rows(df, machine)
    betons = {r.outputs: r for r in plan_rows if r.kind == "beton"}
    costs = []
    for r in plan_rows:
        if r.kind not in TRAIN_KINDS:
            continue
        cfg = load_config(r.recipe, list(r.overrides))
        train = betons.get(r.inputs.get("train", ""))
        if train is None:
            raise UserError(f"plan: run {r.run_id}'s train beton {r.inputs.get('train')} is no beton row of the plan")
        images, source = beton_images(train)
        costs.append(
            RunCost(
                r.run_id,
                r.kind,
                r.recipe,
                cfg.schedule.epochs,
                images,
                source,
                run_rate(rows, r.recipe, cfg.data.batch_size, cfg.data.res),
                tuple(r.depends_on),
            )
        )
    if not costs:
        raise UserError("plan: no training runs to price")
    return costs, why


def describe_study(
    costs: Sequence[RunCost],
    why: str,
    devices: Sequence[int],
    cluster: ClusterShape | None = None,
    gpus_per_run=None,
) -> str:
    """Each run's line, the grid's device-hours and wall time on each number of `devices` (and,
    with `cluster`, on that shape with `gpus_per_run`: a resources.PerKind), and where every
    figure came from (numbered sources)."""
    sources = list(dict.fromkeys(c.rate.source for c in costs))
    assumed = sorted({c.images_source for c in costs if c.images_source != "manifest"})
    lines = [f"{'run':34s} {'kind':8s} {'epochs':>6s} {'images/epoch':>12s} {'img/s':>9s} {'hours':>9s}  rate"]
    for c in costs:
        lines.append(
            f"{c.run_id:34s} {c.kind:8s} {c.epochs:6d} {c.images_per_epoch:12,d} "
            f"{c.rate.images_per_second:9,.1f} {c.hours:9,.2f}  [{sources.index(c.rate.source) + 1}]"
        )
    hours = {c.run_id: c.hours for c in costs}
    deps = {c.run_id: c.depends_on for c in costs}
    lines.append(f"total: {len(costs)} training runs, {sum(hours.values()):,.1f} device-hours (one device per run)")
    for n in devices:
        lines.append(
            f"wall time on {n} device{'s' if n != 1 else ''}: {wall_hours(hours, deps, n):,.1f} hours "
            "(each run starts once what it depends on is done)"
        )
    if cluster is not None:
        gpus = {c.run_id: gpus_per_run.of(c.kind) for c in costs}
        asked = ", ".join(f"{k} {n}" for k, n in {c.kind: gpus[c.run_id] for c in costs}.items())
        lines.append(
            f"wall time on {cluster.describe()} ({cluster.gpus} GPUs; GPUs per run: {asked}): "
            f"{cluster_wall_hours(hours, gpus, deps, cluster):,.1f} hours; {SCALING}"
        )
    lines.append(f"priced on {why}:")
    lines += [f"  [{i + 1}] {s}" for i, s in enumerate(sources)]
    if all("no GPU" in s for s in sources):
        lines.append("  no GPU row: these are hours of the CPU that was measured, not of any GPU")
    lines.append(
        "images per epoch: "
        + (
            "assumed where no train beton manifest exists yet: " + "; ".join(assumed)
            if assumed
            else "every run's train beton manifest"
        )
    )
    lines.append("not counted: writing the betons, evaluation passes, start-up of each run")
    return "\n".join(lines)
