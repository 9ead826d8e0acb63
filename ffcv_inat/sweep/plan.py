"""The study as a list of runs with dependencies: a pure function of the plan arguments.

The paper's grid, per seed:
    betons      ImageNet all (train + val), and A, NA, A-k, NA-k, R-k as views of it (or, with
                betons="copies", betons of their own); iNat-Mini-A train + eval
    pretrain    ResNet-50 on each ImageNet subset (pretrain_90ep), except the sets given
                existing weights (`pretrained`: e.g. torchvision's IMAGENET1K_V1 for `all`)
    finetune    each pretrained model on iNat-Mini-A (finetune_inat_60ep)
    linear      each pretrained model, linear probe on ImageNet-A (linear_imagenet_a_15ep)
    scratch     iNat-Mini-A from random init (scratch_inat_60ep), the no-pretraining baseline,
                and the ImageNet-A probe of a random-init network (its counterpart for the probe)

Nothing here touches the filesystem except reading bundled recipe YAML (to scale schedules),
so the same arguments give the same plan, row for row, on every machine.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from .. import UserError
from ..atomic import atomic_outputs
from ..beton.view import is_view
from ..classes import NUM_IMAGENET_CLASSES
from ..config import find_recipe, flatten, load_config
from ..rundir import checkpoint_of, run_dir_of
from ..study import (
    FAMILIES,
    FAMILY_END,
    IMAGENET_A,
    IMAGENET_TRAIN_IMAGES,
    IMAGENET_VAL_PER_CLASS,
    INAT,
    INAT_ANIMAL_SPECIES,
    INAT_MINI_PER_SPECIES,
    STORED_IMAGE_BYTES,
    STORED_IMAGE_SOURCE,
    family_size,
    num_pretrain_classes,
    planned_images,
)
from ..synthetic import study_preset

# 50..300 trace the curve where the paper sees it change; 398 = |A|, so A, NA and R are also
# compared at exactly the animal subset's size.
DEFAULT_KS = (50, 100, 200, 300, 398)
SMOKE_KS = (8,)
SMOKE_FAMILIES = "R"
KINDS = ("data", "beton", "pretrain", "finetune", "linear", "scratch")
# How a plan stores ImageNet's class sets: views of the one ImageNet beton per split, or copies.
BETON_LAYOUTS = ("views", "copies")
TRAIN_KINDS = ("pretrain", "finetune", "linear", "scratch")

RECIPES = {
    "pretrain": "pretrain_90ep.yaml",
    "finetune": "finetune_inat_60ep.yaml",
    "linear": "linear_imagenet_a_15ep.yaml",
    "scratch": "scratch_inat_60ep.yaml",
}

# The smoke grid: synthetic data the sweep makes itself (ffcv_inat.synthetic's "smoke" preset),
# trained with smoke_cpu.yaml's settings (see smoke_overrides). Betons keep the images' size;
# the eval split takes all the extra train images of each species.
SMOKE_DATA = {"preset": "smoke"}
SMOKE_BETON_OPTIONS = {
    "max-res": study_preset("smoke").size,
    "workers": 1,
    "per-class": study_preset("smoke").inat_train_extra,
}


@dataclass(frozen=True)
class PlanRow:
    run_id: str
    kind: str  # one of KINDS
    family: str = ""  # A | NA | R | "" (scratch, data, iNat betons)
    subset: str = ""  # pretraining ImageNet subset: all | A | NA | R ("" when none)
    k: int | None = None  # classes drawn from the subset; None = the whole subset
    seed: int | None = None  # class draw and training seed
    target: str = ""  # what the run is evaluated on: an ImageNet subset label, inat-mini-a, imagenet-a
    split: str = ""  # beton rows: train | val | eval
    recipe: str = ""
    overrides: tuple[str, ...] = ()  # ffcv-train --set items
    options: dict = field(default_factory=dict)  # write-beton / synthetic-data options
    inputs: dict = field(default_factory=dict)  # role -> path (train, val, init, data_dir)
    outputs: str = ""  # the beton, run dir or data dir this row makes
    depends_on: tuple[str, ...] = ()


# ---------------------------------------------------------------------------- naming


def subset_name(subset: str, k: int | None, seed: int | None) -> str:
    """A, NA, all, A-50-s0, R-100-s1: the class set (full subsets do not depend on the seed)."""
    return subset if k is None else f"{subset}-{k}-s{seed}"


def parse_subset_name(name: str) -> tuple[str, int | None, int | None]:
    """(subset, k, seed) of a class set's name (subset_name's inverse): all, A, R-100-s0."""
    subset, _, rest = name.partition("-")
    if not rest:
        if subset not in ("all", "A", "NA"):
            raise UserError(f"{name!r} is not a class set's name (all, A, NA, or A-50-s0, NA-300-s1, R-100-s0)")
        return subset, None, None
    k, _, seed = rest.partition("-s")
    if subset not in FAMILIES or not k.isdigit() or not seed.isdigit():
        raise UserError(f"{name!r} is not a class set's name (all, A, NA, or A-50-s0, NA-300-s1, R-100-s0)")
    return subset, int(k), int(seed)


def model_name(subset: str, k: int | None, seed: int) -> str:
    """A pretrained model: its class set plus the training seed (A-s0, R-100-s0)."""
    return f"{subset}-s{seed}" if k is None else subset_name(subset, k, seed)


def training_run_id(kind: str, subset: str, k: int | None, seed: int) -> str:
    """A training run's id (its run dir's name): pretrain_A-s0, finetune_R-100-s0, scratch_s0,
    and for no subset the random-init probe, linear_random-s0."""
    if not subset:
        return f"scratch_s{seed}" if kind == "scratch" else f"{kind}_random-s{seed}"
    return f"{kind}_{model_name(subset, k, seed)}"


# ---------------------------------------------------------------------------- recipes


@lru_cache(maxsize=None)
def _resolved_recipe(name: str):
    return load_config(name)  # the trainer's own loader: defaults + recipe, typed


def schedule_overrides(recipe: str, scale: float) -> list[str]:
    """--set items that shrink every epoch count of the recipe by `scale`.

    Epochs and the LR-step interval (and milestones, warmup, progressive-resizing epochs and
    the eval interval where the recipe uses them) scale together, so a cheaper slice keeps the
    shape of the paper's schedule: 90 epochs /10 every 30 -> 9 epochs /10 every 3 at 0.1.
    Never below one epoch.
    """
    if scale == 1.0:
        return []
    cfg = _resolved_recipe(recipe)

    def sc(v: int) -> int:
        return max(1, round(v * scale))

    s = cfg.schedule
    out = [f"schedule.epochs={sc(s.epochs)}", f"schedule.step_every={sc(s.step_every)}"]
    if s.milestones:
        out.append(f"schedule.milestones=[{','.join(str(sc(m)) for m in s.milestones)}]")
    if s.warmup_epochs:
        out.append(f"schedule.warmup_epochs={sc(s.warmup_epochs)}")
    if cfg.progressive.enabled:
        out += [
            f"progressive.start_epoch={round(cfg.progressive.start_epoch * scale)}",
            f"progressive.end_epoch={sc(cfg.progressive.end_epoch)}",
        ]
    if cfg.eval.every:
        out.append(f"eval.every={sc(cfg.eval.every)}")
    return out


# ---------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class GridSpec:
    grid: str  # paper | smoke
    ks: tuple[int, ...]
    seeds: tuple[int, ...]
    epochs_scale: float
    work_dir: str
    imagenet_dir: str = ""  # "" -> write-beton reads $IMAGENET_DIR when the beton is written
    inat_dir: str = ""  # "" -> $INAT_DIR
    families: tuple[str, ...] = ("A", "NA", "R")
    extra_overrides: tuple[str, ...] = ()  # --set items for every training run (e.g. device=cuda)
    full_subsets: bool = True  # pretrain on the whole of A and NA too (the curves' end points)
    betons: str = "views"  # BETON_LAYOUTS
    # (class set's name, checkpoint): existing weights that stand for that set's pretraining
    # (ffcv-train's or a torchvision state_dict); the set gets no pretraining row.
    pretrained: tuple[tuple[str, str], ...] = ()


def pretrain_subsets(
    ks: Sequence[int], families: Sequence[str], full_subsets: bool = True
) -> list[tuple[str, str, int | None]]:
    """(family, subset, k) of every pretraining class set.

    A k larger than a family is dropped for that family (A has 398 classes); k equal to it is
    the full subset itself, the curve's end point (A, NA, and all for R). Full ImageNet is
    always in: it is the reference line of every figure. Without full_subsets (the smoke
    grid, where every run costs seconds of fixed start-up) A and NA are not pretrained.
    """
    out = []
    for fam in families:
        if fam not in FAMILIES:
            raise UserError(f"unknown family {fam!r}: choose from {', '.join(FAMILIES)}")
        full, size = FAMILY_END[fam], family_size(fam)
        draw_from = "R" if fam == "R" else fam
        out += [(fam, draw_from, k) for k in sorted(set(ks)) if k < size]
        if full_subsets or full == "all":
            out.append((fam, full, None))
    if not any(s == "all" for _, s, _ in out):
        out.append(("R", "all", None))
    return out


def check_spec(spec: GridSpec) -> None:
    if spec.grid not in ("paper", "smoke"):
        raise UserError(f"unknown grid {spec.grid!r}: choose paper or smoke")
    if not spec.seeds:
        raise UserError("--seeds: give at least one seed")
    if any(k < 1 for k in spec.ks):
        raise UserError(f"--k values must be at least 1, got {','.join(map(str, spec.ks))}")
    if spec.epochs_scale <= 0:
        raise UserError(f"--epochs-scale must be positive, got {spec.epochs_scale}")
    if spec.betons not in BETON_LAYOUTS:
        raise UserError(f"--betons must be one of {', '.join(BETON_LAYOUTS)}, got {spec.betons!r}")
    names = pretraining_set_names(spec)
    for name, _ in spec.pretrained:
        if name not in names:
            raise UserError(f"--pretrained {name}=...: the grid pretrains no {name} (its sets: {', '.join(names)})")
    given = [name for name, _ in spec.pretrained]
    if len(set(given)) != len(given):
        raise UserError(f"--pretrained: {', '.join(sorted({n for n in given if given.count(n) > 1}))} given twice")


def pretraining_set_names(spec: GridSpec) -> list[str]:
    """The names of the class sets the grid pretrains on (what --pretrained takes), in plan order."""
    sets = [
        subset_name(subset, k, seed if k is not None else None)
        for seed in spec.seeds
        for _, subset, k in pretrain_subsets(spec.ks, spec.families, spec.full_subsets)
    ]
    return list(dict.fromkeys(sets))


def build_plan(spec: GridSpec) -> list[PlanRow]:
    """The grid's rows in a valid run order: data (smoke), betons, then the training runs."""
    check_spec(spec)
    rows, sources = source_rows(spec)
    imagenet = imagenet_beton_rows(spec, sources)
    inat = {split: beton_row(INAT, split, sources) for split in ("train", "eval")}
    rows += list(imagenet.values()) + list(inat.values())
    rows += training_rows(spec, imagenet, inat)
    rows = without_unused_betons(rows)
    check_plan(rows)
    check_training_configs(rows)
    return rows


@dataclass(frozen=True)
class BetonSources:
    """Where a plan's betons read images and go, what runs before them, their write-beton options."""

    betons: Path
    imagenet_dir: str
    inat_dir: str
    depends_on: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)


def source_rows(spec: GridSpec) -> tuple[list[PlanRow], BetonSources]:
    """The smoke grid's data row (it makes the images its betons read), or none on real data."""
    work = Path(spec.work_dir)
    if spec.grid != "smoke":
        return [], BetonSources(work / "betons", spec.imagenet_dir, spec.inat_dir)
    data_dir = work / "data"
    data = PlanRow("data_synthetic", "data", options=dict(SMOKE_DATA), outputs=str(data_dir))
    return [data], BetonSources(
        work / "betons",
        str(data_dir / "imagenet"),
        str(data_dir / "inat2021"),
        (data.run_id,),
        dict(SMOKE_BETON_OPTIONS),
    )


def beton_row(
    dataset: str, split: str, src: BetonSources, subset: str = "", k: int | None = None, seed: int | None = None
) -> PlanRow:
    name = f"imagenet_{subset_name(subset, k, seed)}" if dataset == "imagenet" else dataset
    opts = {"dataset": dataset, "split": split, **src.options}
    if dataset == "imagenet":
        opts.pop("per-class", None)
        opts.update({"subset": subset} | ({"k": k, "seed": seed} if k is not None else {}))
    elif split != "eval":
        opts.pop("per-class", None)
    root = src.imagenet_dir if dataset == "imagenet" else src.inat_dir
    return PlanRow(
        f"beton_{name}_{split}",
        "beton",
        subset=subset if dataset == "imagenet" else "",
        k=k,
        seed=seed if k is not None else None,
        split=split,
        options=opts,
        inputs={"data_dir": root},
        outputs=str(src.betons / f"{name}_{split}.beton"),
        depends_on=src.depends_on,
    )


def view_row(split: str, parent: PlanRow, src: BetonSources, subset: str, k: int | None, seed: int | None) -> PlanRow:
    """The row writing a class set as a view of `parent` (`write-beton --from`): no image read."""
    name = f"imagenet_{subset_name(subset, k, seed)}"
    opts = {"dataset": "imagenet", "split": split, "subset": subset} | ({"k": k, "seed": seed} if k is not None else {})
    return PlanRow(
        f"beton_{name}_{split}",
        "beton",
        subset=subset,
        k=k,
        seed=seed if k is not None else None,
        split=split,
        options=opts,
        inputs={"parent": parent.outputs},
        outputs=str(src.betons / f"{name}_{split}.view.json"),
        depends_on=(parent.run_id,),
    )


def imagenet_beton_rows(spec: GridSpec, src: BetonSources) -> dict[tuple, PlanRow]:
    """(subset, k, seed, split) -> beton row of every pretraining class set, and ImageNet-A's
    (the linear probe's data). Full subsets are the same for every seed: written once. With
    views, all of ImageNet is written once per split and every other class set is a view of it."""
    subsets = pretrain_subsets(spec.ks, spec.families, spec.full_subsets)
    class_sets = sorted(
        {(s, k, seed if k is not None else None) for seed in spec.seeds for _, s, k in subsets},
        key=lambda t: (t[0], t[1] or 0, -1 if t[2] is None else t[2]),
    )
    if ("A", None, None) not in class_sets:
        class_sets.insert(0, ("A", None, None))
    if spec.betons == "views":
        parents = {split: beton_row("imagenet", split, src, "all") for split in ("train", "val")}
        return {
            (subset, k, seed, split): parents[split]
            if (subset, k) == ("all", None)
            else view_row(split, parents[split], src, subset, k, seed)
            for subset, k, seed in [("all", None, None)] + [c for c in class_sets if c != ("all", None, None)]
            for split in ("train", "val")
        }
    return {
        (subset, k, seed, split): beton_row("imagenet", split, src, subset, k, seed)
        for subset, k, seed in class_sets
        for split in ("train", "val")
    }


def training_overrides(spec: GridSpec, kind: str, seed: int, has_init: bool, given_set: str = "") -> tuple[str, ...]:
    """A training run's --set items: the schedule's scaling, the smoke settings, its seed, the
    user's; and, for weights given in place of a pretraining run, the set they stand for."""
    out = list(schedule_overrides(RECIPES[kind], spec.epochs_scale))
    out += smoke_overrides() if spec.grid == "smoke" else []
    out.append(f"{SEED_KEY}={seed}")
    out += spec.extra_overrides
    if kind == "linear" and not has_init:
        out.append("model.init=null")  # the probe recipe expects a checkpoint
    if given_set:
        out.append(f"{INIT_PRETRAINED_ON_KEY}={given_set}")
    return tuple(out)


# Where a finetune or probe of given weights records the class set they stand for (ffcv-analyze reads it).
INIT_PRETRAINED_ON_KEY = "model.init_pretrained_on"


@dataclass(frozen=True)
class GivenWeights:
    """Existing weights standing for a class set's pretraining (`ffcv-sweep plan --pretrained`)."""

    name: str  # the class set's name: all, A, R-100-s0
    checkpoint: str


def train_row(
    spec: GridSpec, kind: str, train: PlanRow, val: PlanRow, init: PlanRow | GivenWeights | None, **meta
) -> PlanRow:
    run_id = training_run_id(kind, meta.get("subset", ""), meta.get("k"), meta["seed"])
    inputs = {"train": train.outputs, "val": val.outputs}
    deps = [train.run_id, val.run_id]
    if isinstance(init, GivenWeights):
        inputs["init"] = init.checkpoint
    elif init is not None:
        inputs["init"] = str(checkpoint_of(init.outputs))
        deps.append(init.run_id)
    given_set = init.name if isinstance(init, GivenWeights) else ""
    overrides = training_overrides(spec, kind, meta["seed"], init is not None, given_set)
    return PlanRow(
        run_id,
        kind,
        recipe=RECIPES[kind],
        overrides=overrides,
        inputs=inputs,
        outputs=str(Path(spec.work_dir) / "runs" / run_id),
        depends_on=tuple(deps),
        **meta,
    )


def training_rows(spec: GridSpec, imagenet: dict[tuple, PlanRow], inat: dict[str, PlanRow]) -> list[PlanRow]:
    """Per seed: pretraining on each class set (or the weights given for it), its finetune and
    probe; scratch; the random-init probe."""
    a_train, a_val = imagenet[("A", None, None, "train")], imagenet[("A", None, None, "val")]
    given = dict(spec.pretrained)
    pretrains, finetunes, linears, scratches = [], [], [], []
    for seed in spec.seeds:
        for fam, subset, k in pretrain_subsets(spec.ks, spec.families, spec.full_subsets):
            bseed = seed if k is not None else None
            meta = dict(family=fam, subset=subset, k=k, seed=seed)
            name = subset_name(subset, k, bseed)
            if name in given:
                pre = GivenWeights(name, given[name])
            else:
                pre = train_row(
                    spec,
                    "pretrain",
                    imagenet[(subset, k, bseed, "train")],
                    imagenet[(subset, k, bseed, "val")],
                    None,
                    target=name,
                    **meta,
                )
                pretrains.append(pre)
            finetunes.append(train_row(spec, "finetune", inat["train"], inat["eval"], pre, target=INAT, **meta))
            linears.append(train_row(spec, "linear", a_train, a_val, pre, target=IMAGENET_A, **meta))
        scratches.append(train_row(spec, "scratch", inat["train"], inat["eval"], None, target=INAT, seed=seed))
        # Figure 4's no-pretraining reference: the same probe on random-init features.
        linears.append(train_row(spec, "linear", a_train, a_val, None, target=IMAGENET_A, seed=seed))
    # Pretrained models appear in more than one family (all = R's end point): keep the first.
    return _unique(pretrains) + _unique(finetunes) + _unique(linears) + scratches


def without_unused_betons(rows: Sequence[PlanRow]) -> list[PlanRow]:
    """The rows less the betons no run reads (a set whose pretraining was given as weights):
    a beton row stays while any row depends on it, a view's parent while the view stays."""
    rows = list(rows)
    while True:
        used = {d for r in rows for d in r.depends_on}
        kept = [r for r in rows if r.kind != "beton" or r.run_id in used]
        if len(kept) == len(rows):
            return kept
        rows = kept


def _unique(rows: Iterable[PlanRow]) -> list[PlanRow]:
    seen, out = set(), []
    for r in rows:
        if r.run_id not in seen:
            seen.add(r.run_id)
            out.append(r)
    return out


# The trainer's seed (ffcv_inat/config.py): weights init and data order of a run.
SEED_KEY = "seed"

# Smoke runs take every setting of the smoke recipe (batch 16, 32 px, no augmentation, its
# LR and optimiser, zero-init residuals: what lets a ResNet-50 learn in a few steps and keeps
# BatchNorm's running statistics usable after them) except the run's structure, which comes
# from the paper recipe of its kind (init, frozen parts, data). smoke_cpu.yaml is the one
# source of those values; the grid adds only SMOKE_GRID_OVERRIDES.
SMOKE_RECIPE = "smoke_cpu.yaml"
STRUCTURE_KEYS = ("model.init", "model.freeze", "data.train", "data.val")
# Every run the same short schedule whatever its data: 12 steps of 16 images, as 4 epochs of
# at most 3 steps (R-8's 48 images are 3 batches), with the recipe's LR / 10 after epoch 2;
# one evaluation at the end, in large batches; one loader worker (runs go one at a time).
# Measured on 2 CPU cores: with 2 steps (the grid before) BatchNorm's running statistics
# stayed at their init and every run was at chance; 12 steps cost ~1-3 s a run beside its
# ~10 s of start-up. (A constant LR let scratch catch up with R-8: the decay keeps the order.)
SMOKE_GRID_OVERRIDES = (
    "device=cpu",
    "schedule.epochs=4",
    "schedule.max_steps_per_epoch=3",
    "data.workers=1",
    "eval.every=0",
    "eval.batch_size=128",
    "log_every=1",
)


def _yaml_scalar(v) -> str:
    """A recipe value as `--set` writes it: flow YAML, so that config.parse_set reads back the
    same value (strings such as "yes" or "a: b" come quoted)."""
    return yaml.safe_dump(v, default_flow_style=True, width=1 << 16).removesuffix("\n...\n").strip()


@lru_cache(maxsize=None)
def smoke_recipe_overrides() -> tuple[str, ...]:
    """smoke_cpu.yaml's own values as --set items, in file order, without STRUCTURE_KEYS."""
    _, text = find_recipe(SMOKE_RECIPE)
    return tuple(
        f"{key}={_yaml_scalar(value)}"
        for key, value in flatten(yaml.safe_load(text) or {}).items()
        if key not in STRUCTURE_KEYS
    )


def smoke_overrides() -> list[str]:
    """--set items of every smoke training run: the smoke recipe's, where the grid sets a key
    too with the grid's value, then the grid's other keys (each key once)."""
    items = {}
    for item in (*smoke_recipe_overrides(), *SMOKE_GRID_OVERRIDES):
        key, _, value = item.partition("=")
        items[key] = value
    return [f"{k}={v}" for k, v in items.items()]


# ---------------------------------------------------------------------------- checks


def check_plan(rows: Sequence[PlanRow]) -> None:
    """Unique ids, every dependency exists and comes earlier (so the plan is acyclic and in a
    valid run order), and every input path is made by one of the row's dependencies."""
    by_id: dict[str, PlanRow] = {}
    producer = {r.outputs: r.run_id for r in rows}
    for r in rows:
        if r.run_id in by_id:
            raise UserError(f"plan: duplicate run id {r.run_id}")
        if r.kind not in KINDS:
            raise UserError(f"plan: {r.run_id}: unknown kind {r.kind!r}")
        for d in r.depends_on:
            if d not in by_id:
                raise UserError(f"plan: {r.run_id} depends on {d}, which is not an earlier row")
        for role, path in r.inputs.items():
            made_by = producer.get(path) or producer.get(str(run_dir_of(path)))  # init: a run's last.pt
            if made_by is not None and made_by not in r.depends_on:
                raise UserError(f"plan: {r.run_id} reads {role}={path} from {made_by} without depending on it")
        by_id[r.run_id] = r


def check_training_configs(rows: Sequence[PlanRow]) -> None:
    """Every training row's recipe + --set items through the trainer's own config loader, so
    a mistyped key or a value of the wrong type (e.g. from `ffcv-sweep plan --set`) is one
    UserError naming it when the plan is made, not a failure of every run at its start.
    (Paths are not checked: the betons and checkpoints do not exist yet.)"""
    for r in rows:
        if r.kind in TRAIN_KINDS:
            _check_config(r.recipe, r.overrides)


@lru_cache(maxsize=None)
def _check_config(recipe: str, overrides: tuple[str, ...]) -> None:
    load_config(recipe, list(overrides))


def topological_order(rows: Sequence[PlanRow]) -> list[PlanRow]:
    """Rows in an order where every dependency comes first (stable for an already valid plan)."""
    by_id = {r.run_id: r for r in rows}
    done: set[str] = set()
    order: list[PlanRow] = []
    visiting: set[str] = set()

    def visit(r: PlanRow):
        if r.run_id in done:
            return
        if r.run_id in visiting:
            raise UserError(f"plan: dependency cycle through {r.run_id}")
        visiting.add(r.run_id)
        for d in r.depends_on:
            if d not in by_id:
                raise UserError(f"plan: {r.run_id} depends on unknown run {d}")
            visit(by_id[d])
        visiting.discard(r.run_id)
        done.add(r.run_id)
        order.append(r)

    for r in rows:
        visit(r)
    return order


def with_dependencies(rows: Sequence[PlanRow], selected: Iterable[str]) -> list[PlanRow]:
    """The selected rows and everything they need, in plan order."""
    by_id = {r.run_id: r for r in rows}
    need: set[str] = set()
    stack = list(selected)
    while stack:
        rid = stack.pop()
        if rid not in by_id:
            raise UserError(f"no run {rid!r} in the plan")
        if rid not in need:
            need.add(rid)
            stack.extend(by_id[rid].depends_on)
    return [r for r in rows if r.run_id in need]


# ---------------------------------------------------------------------------- CSV

COLUMNS = [f.name for f in fields(PlanRow)]
_JSON_COLUMNS = ("overrides", "options", "inputs")


def plan_to_csv(rows: Sequence[PlanRow]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        d = asdict(r)
        for c in _JSON_COLUMNS:
            d[c] = json.dumps(d[c], sort_keys=True) if d[c] else ""
        d["depends_on"] = ";".join(r.depends_on)
        d["k"] = "" if r.k is None else r.k
        d["seed"] = "" if r.seed is None else r.seed
        w.writerow(d)
    return buf.getvalue()


def write_plan(rows: Sequence[PlanRow], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_outputs(path) as (tmp,):
        tmp.write_text(plan_to_csv(rows))


def read_plan(path: str | Path) -> list[PlanRow]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"plan not found: {path} (make one with ffcv-sweep plan)")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise UserError(f"{path}: not an ffcv-sweep plan (expected columns {','.join(COLUMNS)})")
        rows = []
        for n, d in enumerate(reader, start=2):
            try:
                for c in _JSON_COLUMNS:
                    d[c] = json.loads(d[c]) if d[c] else ([] if c == "overrides" else {})
                rows.append(
                    PlanRow(
                        **{
                            **d,
                            "k": int(d["k"]) if d["k"] else None,
                            "seed": int(d["seed"]) if d["seed"] else None,
                            "overrides": tuple(d["overrides"]),
                            "depends_on": tuple(x for x in d["depends_on"].split(";") if x),
                        }
                    )
                )
            except (ValueError, TypeError) as e:
                raise UserError(f"{path}:{n}: bad plan row ({e})") from None
    check_plan(rows)
    return rows


@dataclass(frozen=True)
class Storage:
    """What a plan's betons hold, at the real datasets' sizes (`study.planned_images`)."""

    betons: int  # beton rows that write images
    views: int  # beton rows that are views: a small file each, no image
    images: int  # images the betons hold, each written once
    per_extra_seed: int  # images one more seed would add (its drawn class sets)

    @property
    def gigabytes(self) -> float:
        return self.images * STORED_IMAGE_BYTES / 1e9

    def describe(self) -> str:
        extra = self.per_extra_seed * STORED_IMAGE_BYTES / 1e9
        return (
            f"storage at ImageNet's and iNat-2021's sizes: {self.betons} betons write and hold "
            f"{self.images / 1e6:.2f} M images ≈ {self.gigabytes:,.0f} GB"
            + (f", and {self.views} views of ImageNet hold none of their own" if self.views else "")
            + f"; each further seed adds {self.per_extra_seed / 1e6:.2f} M images ≈ {extra:,.0f} GB"
            + (" (its class sets are views)" if self.views and not self.per_extra_seed else "")
            + f". Assumed: {STORED_IMAGE_SOURCE}; ImageNet train {IMAGENET_TRAIN_IMAGES / 1000:,.1f} images a class, "
            f"val {IMAGENET_VAL_PER_CLASS}; iNat-Mini-A {INAT_MINI_PER_SPECIES} a species, its eval split the plan's "
            f"images a species, of {INAT_ANIMAL_SPECIES:,} animal species"
        )


def beton_row_images(row: PlanRow) -> int:
    """Images a beton row writes (a view: none), at the real datasets' sizes."""
    if is_view(row.outputs):
        return 0
    dataset = row.options.get("dataset", "imagenet")
    if dataset == "imagenet":
        return planned_images(dataset, row.split, num_pretrain_classes(row.subset, row.k) or NUM_IMAGENET_CLASSES)
    per_class = int(row.options.get("per-class", INAT_MINI_PER_SPECIES))
    return planned_images(dataset, row.split, INAT_ANIMAL_SPECIES, per_class)


def plan_storage(rows: Sequence[PlanRow]) -> Storage:
    """What the plan's betons will store, and what one more seed would add (the beton rows of its
    first seed's drawn class sets stand for it)."""
    betons = [r for r in rows if r.kind == "beton"]
    seeds = [r.seed for r in betons if r.k is not None]
    first = min(seeds) if seeds else None
    return Storage(
        betons=sum(not is_view(r.outputs) for r in betons),
        views=sum(is_view(r.outputs) for r in betons),
        images=sum(beton_row_images(r) for r in betons),
        per_extra_seed=sum(beton_row_images(r) for r in betons if r.k is not None and r.seed == first),
    )


def plan_summary(rows: Sequence[PlanRow]) -> dict[str, int]:
    counts = {k: 0 for k in KINDS}
    for r in rows:
        counts[r.kind] += 1
    return {k: v for k, v in counts.items() if v}
