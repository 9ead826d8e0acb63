"""Run dirs -> one pandas table of the study (pure functions; figures.py draws from it).

A run's description is read from its own files, never from the plan: summary.json (metrics,
beton paths, init), config.yaml (seed, frozen parts) and the betons' manifests (subset, k).
A finetune or probe inherits its pretraining subset from the run dir its --init checkpoint
lives in, or, for given weights (`ffcv-sweep plan --pretrained`), from the set its config's
model.init_pretrained_on names; the `pretraining` column says which ("run" or "given"). So any
run dir of ffcv-train can be analysed, made by the sweep or by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import pandas as pd
import yaml

from .. import UserError
from ..beton import manifest_path
from ..classes import subset_label
from ..rundir import CONFIG, PER_CLASS, SUMMARY, read_summary, run_dir_of
from ..study import FAMILIES, IMAGENET_A, family_of, num_pretrain_classes
from ..sweep.plan import parse_subset_name

BASE_COLUMNS = [
    "run",
    "kind",
    "family",
    "subset",
    "k",
    "num_pretrain_classes",
    "pretraining",
    "init",
    "seed",
    "target",
    "top1",
    "top5",
    "loss",
    "num_classes",
    "epochs",
    "wall_seconds",
    "gpu_hours",
    "train_images_per_second",
    "device",
]


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every completed run under root: a complete summary.json (written last, so it means
    "done"). A corrupt or partial one is reported once on stderr and its run left out, as
    `ffcv-sweep status` counts it not done (both read it with rundir.read_summary)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"runs dir not found: {root}")
    return sorted(p.parent for p in root.rglob(SUMMARY) if read_summary(p.parent) is not None)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _manifest(beton: str | None) -> dict:
    return _read_json(manifest_path(beton)) if beton else {}


def _train_beton(run_dir: Path, summary: dict, config: dict) -> str | None:
    return summary.get("train_beton") or (config.get("data") or {}).get("train")


# How a row's pretraining came about (the `pretraining` column).
PRETRAINING_RUN, PRETRAINING_GIVEN, PRETRAINING_EXTERNAL = "run", "given", "external"


def pretraining_of(init: str | None, declared: str | None = None) -> dict:
    """subset/k of the ImageNet pretraining behind a checkpoint, and how it came about: the
    set `declared` (model.init_pretrained_on: given weights), else the train beton of the
    ffcv-train run dir the checkpoint lives in; "external" when neither says."""
    if not init:
        return {"subset": "", "k": None, "pretraining": ""}
    if declared:
        try:
            subset, k, _ = parse_subset_name(declared)
            return {"subset": subset, "k": k, "pretraining": PRETRAINING_GIVEN}
        except UserError:
            return {"subset": PRETRAINING_EXTERNAL, "k": None, "pretraining": PRETRAINING_EXTERNAL}
    run_dir = run_dir_of(init)
    summary, config = read_summary(run_dir) or {}, _read_yaml(run_dir / CONFIG)
    m = _manifest(_train_beton(run_dir, summary, config))
    if not m:  # e.g. a torchvision state_dict, its set not declared
        return {"subset": PRETRAINING_EXTERNAL, "k": None, "pretraining": PRETRAINING_EXTERNAL}
    return {"subset": m.get("subset") or "all", "k": m.get("k"), "pretraining": PRETRAINING_RUN}


def describe_run(run_dir: str | Path) -> dict:
    """One row of the results table for a completed run dir."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if summary is None:
        raise UserError(f"{run_dir / SUMMARY}: missing or not a complete ffcv-train summary")
    config = _read_yaml(run_dir / CONFIG)
    train_m = _manifest(_train_beton(run_dir, summary, config))
    init = summary.get("init") or (config.get("model") or {}).get("init")
    frozen = (summary.get("freeze") or (config.get("model") or {}).get("freeze")) == "backbone"
    on_imagenet = train_m.get("dataset") == "imagenet"
    if frozen:
        kind = "linear"
    elif init:
        kind = "finetune"
    else:
        kind = "pretrain" if on_imagenet else "scratch"
    if kind == "pretrain":
        pre = {"subset": train_m.get("subset") or "all", "k": train_m.get("k"), "pretraining": PRETRAINING_RUN}
    else:
        pre = pretraining_of(init, (config.get("model") or {}).get("init_pretrained_on"))
    k = pre["k"]
    subset = pre["subset"]
    if on_imagenet:
        t_sub, t_k = train_m.get("subset") or "all", train_m.get("k")
        target = IMAGENET_A if (t_sub, t_k) == ("A", None) and kind == "linear" else subset_label(t_sub, t_k)
    else:
        target = train_m.get("dataset") or ""
    device = str(summary.get("device", ""))
    gpus = 0 if (not device or "cpu" in device.lower()) else int(summary.get("world_size") or 1)
    wall = summary.get("wall_seconds")
    row = {
        "run": run_dir.name,
        "kind": kind,
        "family": family_of(subset),
        "subset": subset,
        "k": k,
        "num_pretrain_classes": num_pretrain_classes(subset, k),
        "pretraining": pre["pretraining"],
        "init": init or "",
        "seed": config.get("seed"),
        "target": target,
        "top1": summary.get("top1"),
        "top5": summary.get("top5"),
        "loss": summary.get("loss"),
        "num_classes": summary.get("num_classes"),
        "epochs": summary.get("epochs"),
        "wall_seconds": wall,
        "gpu_hours": (wall * gpus / 3600) if wall is not None else None,
        "train_images_per_second": summary.get("train_images_per_second"),
        "device": device,
    }
    for name, acc in sorted((summary.get("per_supercategory") or {}).items()):
        row[f"acc_{name}"] = acc
    row["run_dir"] = str(run_dir)
    return row


KIND_ORDER = {"pretrain": 0, "finetune": 1, "linear": 2, "scratch": 3}


def results_table(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    rows = [describe_run(d) for d in run_dirs]
    if not rows:
        return pd.DataFrame(columns=BASE_COLUMNS + ["run_dir"])
    df = pd.DataFrame(rows)
    acc_cols = sorted(c for c in df.columns if c.startswith("acc_"))
    df = df[BASE_COLUMNS + acc_cols + ["run_dir"]]
    df["k"] = df["k"].astype("Int64")
    df["num_pretrain_classes"] = df["num_pretrain_classes"].astype("Int64")
    df["seed"] = df["seed"].astype("Int64")
    order = df["kind"].map(KIND_ORDER).fillna(9)
    return (
        df.assign(_o=order)
        .sort_values(["_o", "family", "num_pretrain_classes", "subset", "seed", "run"], na_position="first")
        .drop(columns="_o")
        .reset_index(drop=True)
    )


def gather(runs_dir: str | Path) -> pd.DataFrame:
    return results_table(find_run_dirs(runs_dir))


# --------------------------------------------------------------------------- curves (Figures 3, 4, 6)


def curve_points(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Mean/std/n of top-1 over seeds per (family, #pretraining classes), for one downstream kind.

    R's curve ends at full ImageNet (R-1000 = all 1,000 classes).
    """
    d = df[(df["kind"] == kind) & (df["family"].isin(FAMILIES))]
    if d.empty:
        return pd.DataFrame(columns=["family", "x", "mean", "std", "n"])
    g = d.groupby(["family", "num_pretrain_classes"])["top1"]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out.columns = ["family", "x", "mean", "std", "n"]
    out["std"] = out["std"].fillna(0.0)
    return out.sort_values(["family", "x"]).reset_index(drop=True)


def reference_levels(df: pd.DataFrame, kind: str) -> dict[str, float]:
    """Horizontal references: full ImageNet pretraining, and no pretraining (random init)."""
    d = df[df["kind"] == kind]
    refs = {}
    full = d[d["subset"] == "all"]["top1"]
    if len(full):
        refs["full ImageNet"] = float(full.mean())
    if kind == "finetune":
        scratch = df[df["kind"] == "scratch"]["top1"]
    else:
        scratch = d[d["subset"] == ""]["top1"]  # a probe on random-init features
    if len(scratch):
        refs["no pretraining"] = float(scratch.mean())
    return refs


# --------------------------------------------------------------------------- per-supercategory (Figure 2)


def supercategory_table(df: pd.DataFrame, subsets: Iterable[str] = ("all", "A", "NA")) -> pd.DataFrame:
    """Rows: supercategories; columns: scratch and each finetune pretraining subset present (mean over seeds)."""
    acc_cols = [c for c in df.columns if c.startswith("acc_")]
    cols = {}
    scratch = df[df["kind"] == "scratch"]
    if len(scratch):
        cols["scratch"] = scratch[acc_cols].mean()
    for s in subsets:
        ft = df[(df["kind"] == "finetune") & (df["subset"] == s) & (df["k"].isna())]
        if len(ft):
            cols[f"pretrained on {'ImageNet' if s == 'all' else 'ImageNet-' + s}"] = ft[acc_cols].mean()
    if not cols:
        return pd.DataFrame()
    t = pd.DataFrame(cols)
    t.index = [c[len("acc_") :] for c in t.index]
    return t.dropna(how="all")


# --------------------------------------------------------------------------- per-species gain (Figure 1)

SPECIES_COLUMNS = ("species", "imagenet_images", "family")
SPECIES_CSV_HELP = (
    "Figure 1 needs --species-csv: a CSV with columns species (the iNat category id or species name, as in "
    "per_class.csv's id or name), imagenet_images (how many ImageNet images represent the species, e.g. "
    "corrected counts; 0 if none) and family (the group to colour by, e.g. Birds)."
)


def per_class_table(df: pd.DataFrame, kinds: Iterable[str] = ("finetune", "scratch")) -> pd.DataFrame:
    """Long table of every per_class.csv of the given kinds, with the run's subset and seed."""
    parts = []
    for _, r in df[df["kind"].isin(list(kinds))].iterrows():
        path = Path(r["run_dir"]) / PER_CLASS
        if not path.is_file():
            continue
        pc = pd.read_csv(path, dtype={"id": str})
        pc.insert(0, "run", r["run"])
        pc.insert(1, "kind", r["kind"])
        pc.insert(2, "subset", subset_label(r["subset"], None if pd.isna(r["k"]) else int(r["k"])))
        pc.insert(3, "seed", r["seed"])
        parts.append(pc)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def species_gain(per_class: pd.DataFrame, pretrained_subset: str = "all") -> pd.DataFrame:
    """Per species: finetuned-from-`pretrained_subset` minus scratch accuracy (means over seeds)."""
    if per_class.empty:
        return pd.DataFrame(columns=["id", "name", "supercategory", "pretrained", "scratch", "gain"])
    keys = ["id", "name", "supercategory"]
    pre = per_class[(per_class["kind"] == "finetune") & (per_class["subset"] == pretrained_subset)]
    scr = per_class[per_class["kind"] == "scratch"]
    if pre.empty or scr.empty:
        return pd.DataFrame(columns=keys + ["pretrained", "scratch", "gain"])
    a = pre.groupby(keys, dropna=False)["accuracy"].mean().rename("pretrained")
    b = scr.groupby(keys, dropna=False)["accuracy"].mean().rename("scratch")
    t = pd.concat([a, b], axis=1, join="inner").reset_index()
    t["gain"] = t["pretrained"] - t["scratch"]
    return t.sort_values("id", key=lambda s: s.map(_id_sort_key)).reset_index(drop=True)


def _id_sort_key(x):
    try:
        return (0, int(x), "")
    except (TypeError, ValueError):
        return (1, 0, str(x))


def read_species_csv(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"species CSV not found: {path}. {SPECIES_CSV_HELP}")
    t = pd.read_csv(path, dtype={"species": str, "family": str})
    missing = [c for c in SPECIES_COLUMNS if c not in t.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}. {SPECIES_CSV_HELP}")
    t["imagenet_images"] = pd.to_numeric(t["imagenet_images"], errors="coerce")
    if t["imagenet_images"].isna().any():
        bad = t.loc[t["imagenet_images"].isna(), "species"].iloc[0]
        raise UserError(f"{path}: imagenet_images is not a number for species {bad}")
    return t


def join_species(gain: pd.DataFrame, species: pd.DataFrame) -> pd.DataFrame:
    """Match the user's species to per-class rows by id, else by name."""
    by_id = gain.merge(species, left_on="id", right_on="species", how="inner")
    rest = species[~species["species"].isin(by_id["species"])]
    by_name = gain.merge(rest, left_on="name", right_on="species", how="inner")
    return pd.concat([by_id, by_name], ignore_index=True)


def format_table(df: pd.DataFrame) -> str:
    """The results table for the terminal: the columns a reader compares, accuracies in %."""
    if df.empty:
        return "(no completed runs)"
    show = df[["run", "kind", "subset", "k", "seed", "target", "top1", "top5", "wall_seconds", "gpu_hours"]].copy()
    for c in ("k", "seed"):
        show[c] = show[c].map(lambda v: "" if pd.isna(v) else str(int(v)))
    for c in ("top1", "top5"):
        show[c] = show[c].map(
            lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"
        )
    show["wall_seconds"] = show["wall_seconds"].map(lambda v: f"{v:.1f}")
    show["gpu_hours"] = show["gpu_hours"].map(lambda v: f"{v:.3f}")
    show = show.rename(columns={"top1": "top1 %", "top5": "top5 %", "wall_seconds": "wall s"})
    return show.to_string(index=False, na_rep="")
