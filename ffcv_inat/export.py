"""Weights to take away: a checkpoint as a plain torchvision ResNet-50 state_dict, with its classes.

`ffcv-train export RUN_DIR_OR_CHECKPOINT --out model.pt` writes model.pt, which
`torchvision.models.resnet50(num_classes=K).load_state_dict(torch.load("model.pt", weights_only=True))`
takes as it is, and beside it model.classes.csv: the head's classes in label order (label, id,
name), from the checkpoint (ffcv-train stores its train beton's classes in it) or, for an older
checkpoint, from the train beton's manifest its config names (or `--beton`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from . import UserError
from .atomic import atomic_outputs
from .beton import check_beton
from .checkpoint import FORMAT, checkpoint_num_classes, load_file, model_state
from .rundir import BEST_CHECKPOINT, CHECKPOINT

CLASS_COLUMNS = ("label", "id", "name")


def classes_path_for(weights: str | Path) -> Path:
    """model.pt -> model.classes.csv, beside it."""
    weights = Path(weights)
    return weights.with_name(f"{weights.stem}.classes.csv")


def checkpoint_in(source: str | Path, best: bool = False) -> Path:
    """The checkpoint a run dir holds (last.pt, or best.pt with `best`), or `source` itself when a file."""
    source = Path(source)
    if source.is_dir():
        path = source / (BEST_CHECKPOINT if best else CHECKPOINT)
        if not path.is_file():
            what = "no best.pt (the run did not evaluate, or has not yet)" if best else "no checkpoints/last.pt"
            raise UserError(f"{source}: {what}")
        return path
    if best:
        raise UserError(f"--best takes a run dir, not a checkpoint file ({source})")
    return source


def trained_config(obj) -> dict:
    """The config an ffcv-train checkpoint was trained with, as a mapping ({} for plain weights)."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT and obj.get("config"):
        return yaml.safe_load(obj["config"]) or {}
    return {}


def classes_of(obj, config: dict, checkpoint: Path, beton: str | None) -> list[tuple[str, str]]:
    """(id, name) per label: from `beton`'s manifest when given, else from the checkpoint, else
    from the manifest of the train beton its `config` (trained_config) names."""
    if beton is not None:
        if not Path(beton).is_file():
            raise UserError(f"--beton {beton}: file not found")
        return [(c.id, c.name) for c in check_beton(beton).classes]
    if isinstance(obj, dict) and obj.get("classes"):
        return [(str(i), str(n)) for i, n in obj["classes"]]
    named = (config.get("data") or {}).get("train")
    if named is None:
        raise UserError(f"{checkpoint}: holds no class list and names no train beton: pass --beton B (its classes)")
    if not Path(named).is_file():
        raise UserError(f"{checkpoint}: its train beton {named} is not there: pass --beton B (its classes)")
    return [(c.id, c.name) for c in check_beton(named).classes]


def classes_csv(classes: list[tuple[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CLASS_COLUMNS)
    w.writerows((label, cid, name) for label, (cid, name) in enumerate(classes))
    return buf.getvalue()


@dataclass(frozen=True)
class Exported:
    weights: Path
    classes: Path
    num_classes: int
    checkpoint: Path
    blurpool: bool  # trained with BlurPool: torchvision's network lacks the blur (see note)

    def note(self) -> str:
        line = f"wrote {self.weights} ({self.num_classes} classes, from {self.checkpoint}) and {self.classes}"
        if self.blurpool:
            line += (
                "; note: trained with BlurPool, which torchvision's resnet50 lacks: the weights load, but the "
                "same outputs need ffcv_inat.model.build_model(K, blurpool=True)"
            )
        return line


def export_weights(source: str | Path, out: str | Path, *, best: bool = False, beton: str | None = None) -> Exported:
    """Write the state_dict of `source` (run dir or checkpoint) to `out` and its classes beside it;
    neither file is left half-written, and existing ones are refused."""
    checkpoint = checkpoint_in(source, best)
    out = Path(out)
    classes_file = classes_path_for(out)
    for path in (out, classes_file):
        if path.exists():
            raise UserError(f"{path} exists: choose another --out")
    obj = load_file(checkpoint)
    state = model_state(obj, str(checkpoint))
    num_classes = checkpoint_num_classes(state, str(checkpoint))
    config = trained_config(obj)
    classes = classes_of(obj, config, checkpoint, beton)
    if len(classes) != num_classes:
        raise UserError(
            f"{checkpoint}: the head has {num_classes} outputs but its classes are {len(classes)}: "
            "pass --beton B with the classes the head was trained on"
        )
    blurpool = bool((config.get("model") or {}).get("blurpool"))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_outputs(classes_file, out) as (tmp_classes, tmp_weights):
        torch.save({k: v.detach().clone() for k, v in state.items()}, tmp_weights)
        tmp_classes.write_text(classes_csv(classes))
    return Exported(out, classes_file, num_classes, checkpoint, blurpool)
