"""Evaluation of a model on a val beton: exact over processes, per class and per supercategory.

`evaluate` runs the model; `write_results` writes per_class.csv and summary.json (the file
whose presence means a run is complete); `evaluate_checkpoint` is `ffcv-train eval`.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from . import UserError
from .atomic import atomic_outputs
from .beton import Manifest, check_beton
from .checkpoint import FORMAT, checkpoint_num_classes, load_file, load_weights, model_state
from .config import Config, config_from_dict
from .distributed import DistInfo, all_reduce_sum, per_process_batch, setup, teardown
from .environment import autocast_dtype, device_name, input_dtype, run_precision, versions
from .loader import AnyLoader, make_loader, model_input, resolve_decode
from .metrics import PER_CLASS_COLUMNS, per_class_counts, per_class_rows, per_supercategory, topk_correct
from .model import build_model
from .rundir import PER_CLASS, SUMMARY


@dataclass
class EvalResult:
    images: int
    top1: float
    top5: float
    loss: float
    per_class_images: list[int]
    per_class_correct: list[int]

    def per_class_rows(self, manifest: Manifest) -> list[dict]:
        return per_class_rows(manifest.classes, self.per_class_images, self.per_class_correct)

    def per_supercategory(self, manifest: Manifest) -> dict[str, float | None]:
        return per_supercategory(manifest.classes, self.per_class_images, self.per_class_correct)

    def summary(self, manifest: Manifest) -> dict:
        """The metrics as summary.json states them."""
        return {
            "top1": self.top1,
            "top5": self.top5,
            "loss": self.loss,
            "eval_images": self.images,
            "per_supercategory": self.per_supercategory(manifest),
        }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: AnyLoader,
    num_classes: int,
    info: DistInfo,
    *,
    total_images: int,
    precision: str = "fp32",
    tta_flip: bool = False,
) -> EvalResult:
    """Top-1/top-5/loss and per-class counts over the whole val beton, summed over processes.

    ffcv's distributed sequential order pads the last round with repeats of the first images
    (like DistributedSampler): sample j of rank r is image r + j * world_size. Positions past
    the end get weight 0, by multiplication rather than boolean indexing, so that no batch
    waits for the GPU to report how many images it kept; every image counts exactly once.
    """
    model.eval()
    dev = info.device
    amp = autocast_dtype(precision)
    counts = torch.zeros(2, num_classes, dtype=torch.long, device=dev)
    topk = torch.zeros(2, dtype=torch.long, device=dev)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    seen = 0
    with loader.start_epoch() as batches:  # its end stops the loader's threads, also when a batch raises
        for images, labels in batches:
            x = model_input(images, precision)
            with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                logits = model(x)
                if tta_flip:
                    logits = logits + model(torch.flip(x, dims=[3]))
            logits = logits.float()
            labels = labels.long()
            n = len(labels)
            keep = torch.ones(n, dtype=torch.long, device=dev)
            if info.distributed:
                pos = info.rank + info.world_size * (seen + torch.arange(n, device=dev))
                keep = (pos < total_images).long()
            seen += n
            loss_sum += (F.cross_entropy(logits, labels, reduction="none").double() * keep).sum()
            topk += topk_correct(logits, labels, (1, 5), weight=keep)
            counts += per_class_counts(logits.argmax(dim=1), labels, num_classes, weight=keep)
    for t in (counts, topk, loss_sum):
        all_reduce_sum(t, info)
    n = int(counts[0].sum())
    if n == 0:
        raise UserError("the val beton has no images")
    return EvalResult(
        images=n,
        top1=int(topk[0]) / n,
        top5=int(topk[1]) / n,
        loss=float(loss_sum) / n,
        per_class_images=counts[0].tolist(),
        per_class_correct=counts[1].tolist(),
    )


def write_results(out_dir: Path, manifest: Manifest, result: EvalResult | None, summary: dict) -> None:
    """per_class.csv (when there is an evaluation), then summary.json: renamed last, so its
    presence means complete."""
    out_dir = Path(out_dir)
    if result is None:
        with atomic_outputs(out_dir / SUMMARY) as (tmp_summary,):
            tmp_summary.write_text(json.dumps(summary, indent=1) + "\n")
        return
    with atomic_outputs(out_dir / PER_CLASS, out_dir / SUMMARY) as (tmp_csv, tmp_summary):
        with open(tmp_csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=PER_CLASS_COLUMNS)
            w.writeheader()
            for row in result.per_class_rows(manifest):
                w.writerow({k: ("" if v is None else v) for k, v in row.items()})
        tmp_summary.write_text(json.dumps(summary, indent=1) + "\n")


def evaluate_checkpoint(
    checkpoint: str | Path,
    val: str | Path,
    out: str | Path | None = None,
    *,
    batch_size: int = 256,
    res: int | None = None,
    workers: int = 0,
    tta_flip: bool = False,
    device: str = "auto",
    precision: str = "bf16",
    decode: str = "cpu",
) -> dict:
    """Evaluate an ffcv-train checkpoint or torchvision state_dict on a val beton.

    res defaults to the checkpoint's data.val_res (224 for a plain state_dict). With `out`,
    writes per_class.csv and summary.json there (refusing to replace existing results).
    decode: where JPEGs are decoded, as data.decode (cpu, gpu, auto).
    """
    checkpoint, val = str(checkpoint), str(val)
    state, num_classes, trained, manifest = _load_inputs(checkpoint, val)
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        for name in (SUMMARY, PER_CLASS):
            if (out_dir / name).exists():
                raise UserError(f"{out_dir / name} exists: choose another --out")
    info = setup(device)
    try:
        decode = resolve_decode(decode, info.device)  # once, before any work
        wall_start = time.perf_counter()
        model = build_model(num_classes, blurpool=trained.model.blurpool if trained else False)
        load_weights(model, state, checkpoint)
        model = model.to(info.device, memory_format=torch.channels_last)
        res = res or (trained.data.val_res if trained else 224)
        ran = run_precision(precision, info.device)
        loader = make_loader(
            val,
            batch_size=per_process_batch(batch_size, info.world_size),
            res=res,
            train=False,
            device=info.device,
            workers=workers,
            distributed=info.distributed,
            decode=decode,
            dtype=input_dtype(ran),
            manifest=manifest,
        )
        result = evaluate(
            model, loader, num_classes, info, total_images=manifest.num_images, precision=ran, tta_flip=tta_flip
        )
        summary = _eval_summary(
            checkpoint, val, num_classes, res, tta_flip, trained, result, manifest, wall_start, info, ran, decode
        )
        if out_dir is not None and info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_results(out_dir, manifest, result, summary)
        return summary
    finally:
        teardown(info)


def _load_inputs(checkpoint: str, val: str) -> tuple[dict[str, torch.Tensor], int, Config | None, Manifest]:
    """Load the checkpoint (its state_dict, class count and, from ffcv-train, its config) and
    check the val beton against it."""
    obj = load_file(checkpoint)
    state = model_state(obj, checkpoint)
    num_classes = checkpoint_num_classes(state, checkpoint)
    trained = None
    if isinstance(obj, dict) and obj.get("format") == FORMAT and obj.get("config"):
        trained = config_from_dict(yaml.safe_load(obj["config"]), f"{checkpoint} (config)")
    manifest = check_beton(val)
    if manifest.num_classes != num_classes:
        raise UserError(f"{val} has {manifest.num_classes} classes but {checkpoint} predicts {num_classes}")
    return state, num_classes, trained, manifest


def _eval_summary(
    checkpoint: str,
    val: str,
    num_classes: int,
    res: int,
    tta_flip: bool,
    trained: Config | None,
    result: EvalResult,
    manifest: Manifest,
    wall_start: float,
    info: DistInfo,
    ran: str,
    decode: str,
) -> dict:
    """The contents of summary.json: what was evaluated, its metrics, and how (wall time since wall_start)."""
    return {
        "checkpoint": checkpoint,
        "val_beton": val,
        "num_classes": num_classes,
        "res": res,
        "tta_flip": tta_flip,
        "recipe": trained.recipe if trained else None,
        **result.summary(manifest),
        "wall_seconds": time.perf_counter() - wall_start,
        "device": device_name(info.device, info.world_size),
        "precision": ran,
        "decode": decode,
        "versions": versions(),
    }
