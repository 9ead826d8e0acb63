"""The Python API: what `ffcv-train` and `ffcv-train eval` do, from a notebook or a script.

    import ffcv_inat
    summary = ffcv_inat.train("finetune_inat_60ep.yaml", train="betons/inat_train.beton",
                              val="betons/inat_eval.beton", out="runs/ft", init="resnet50.pth",
                              overrides={"schedule.epochs": 6, "data.batch_size": 128})
    result = ffcv_inat.evaluate("runs/ft/checkpoints/best.pt", "betons/inat_eval.beton")

Both take the same checks as the commands and raise `ffcv_inat.UserError` with the commands'
one-line messages (an unknown key, a missing beton, a run dir in use). `evaluate` is
`ffcv_inat.evaluation.evaluate_checkpoint`, which `ffcv-train eval` calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

# `ffcv-train eval` as a function: the evaluator itself, with its own signature and defaults.
from .evaluation import evaluate_checkpoint as evaluate  # noqa: F401  (the API's name)


def train(
    recipe: str,
    *,
    train: str | Path,
    val: str | Path | None = None,
    out: str | Path,
    init: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
    space_check: bool = True,
) -> dict:
    """Train as `recipe` (a bundled recipe's file name or a YAML path) says, with `overrides`
    ({"optim.lr": 0.05, ...}, typed as the recipe's keys); return summary.json's contents."""
    from .config import load_config
    from .training.trainer import train as run

    shorthands = {"data.train": train, "data.val": val, "model.init": init, "out": out}
    cfg = load_config(recipe, extra={k: None if v is None else str(v) for k, v in shorthands.items()}, typed=overrides)
    return run(cfg, resume=resume, space_check=space_check)
