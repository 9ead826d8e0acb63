"""The training loop and evaluation: `train(cfg) -> summary` and `evaluate_checkpoint(...)`.

Fast path on a GPU (as ffcv-imagenet): uint8 batches arrive normalised on the device from
the FFCV pipeline, the model is channels-last under bf16 autocast, the LR is set per
iteration from a pure function, and nothing in the step waits for the GPU: the loss is summed
on the device and read back only every `log_every` steps and at the end of the epoch.

Run directory (written by rank 0 only): config.yaml, log.jsonl, checkpoints/last.pt,
per_class.csv and, last of all, summary.json (its presence means the run completed).
"""
from __future__ import annotations

import csv
import json
import math
import platform
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from tqdm import tqdm

from . import UserError, __version__
from .atomic import atomic_outputs
from .checkpoint import (
    FORMAT, checkpoint_num_classes, load_file, load_weights, model_state, rng_state, save_checkpoint,
    set_rng_state,
)
from .config import Config, config_from_dict, to_dict, to_yaml, validate
from .distributed import DistInfo, all_reduce_sum, barrier, per_process_batch, setup, teardown
from .loaders import BetonLoader, make_loader, stop_epoch, to_model_input
from .manifest import Manifest, read_manifest
from .metrics import PER_CLASS_COLUMNS, per_class_counts, per_class_rows, per_supercategory, topk_correct
from .model import apply_freeze, build_model, replace_head, set_train_mode
from .schedule import lr_at, res_at


# ---------------------------------------------------------------- environment

def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for fp32. CPU always runs fp32; bf16 falls back to fp16 on
    GPUs without bf16 support (pre-Ampere)."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "bf16" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def precision_name(amp: torch.dtype | None) -> str:
    """The config's spelling of what actually runs: bf16, fp16 or fp32."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp]


def device_name(device: torch.device, world_size: int = 1) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        name = f"CPU {name} ({torch.get_num_threads()} threads)"
    return f"{world_size} x {name}" if world_size > 1 else name


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    import torchvision

    try:
        ffcv_version = version("ffcv")  # ffcv.__version__ is stale in the 1.0.2 release
    except PackageNotFoundError:
        ffcv_version = None
    return {
        "ffcv_inat": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "ffcv": ffcv_version,
        "numpy": np.__version__, "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None,
    }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _model_input(images: torch.Tensor, loader: BetonLoader, amp: torch.dtype | None) -> torch.Tensor:
    x = to_model_input(images, loader.normalized)
    # The GPU pipeline normalises to fp16: fine under autocast, but an fp32 model needs fp32.
    return x.float() if amp is None and x.dtype != torch.float32 else x


# ---------------------------------------------------------------- evaluation

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


@torch.no_grad()
def evaluate(model: nn.Module, loader: BetonLoader, num_classes: int, info: DistInfo, *,
             total_images: int, amp: torch.dtype | None = None, tta_flip: bool = False) -> EvalResult:
    """Top-1/top-5/loss and per-class counts over the whole val beton, summed over processes.

    ffcv's distributed sequential order pads the last round with repeats of the first images
    (like DistributedSampler): sample j of rank r is image r + j * world_size, and positions
    past the end are masked out so that every image counts exactly once.
    """
    model.eval()
    dev = info.device
    counts = torch.zeros(2, num_classes, dtype=torch.long, device=dev)
    topk = torch.zeros(2, dtype=torch.long, device=dev)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    seen = 0
    for images, labels in loader:
        x = _model_input(images, loader, amp)
        with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(x)
            if tta_flip:
                logits = logits + model(torch.flip(x, dims=[3]))
        logits = logits.float()
        labels = labels.long()
        if info.distributed:
            pos = info.rank + info.world_size * (seen + torch.arange(len(labels), device=dev))
            keep = pos < total_images
            logits, labels = logits[keep], labels[keep]
        seen += len(images)
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        topk += topk_correct(logits, labels, (1, 5))
        counts += per_class_counts(logits.argmax(dim=1), labels, num_classes)
    for t in (counts, topk, loss_sum):
        all_reduce_sum(t, info)
    n = int(counts[0].sum())
    if n == 0:
        raise UserError("the val beton has no images")
    return EvalResult(
        images=n, top1=int(topk[0]) / n, top5=int(topk[1]) / n, loss=float(loss_sum) / n,
        per_class_images=counts[0].tolist(), per_class_correct=counts[1].tolist(),
    )


def write_results(out_dir: Path, manifest: Manifest, result: EvalResult, summary: dict) -> None:
    """per_class.csv, then summary.json: renamed last, so its presence means complete."""
    with atomic_outputs(out_dir / "per_class.csv", out_dir / "summary.json") as (tmp_csv, tmp_summary):
        with open(tmp_csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=PER_CLASS_COLUMNS)
            w.writeheader()
            for row in result.per_class_rows(manifest):
                w.writerow({k: ("" if v is None else v) for k, v in row.items()})
        tmp_summary.write_text(json.dumps(summary, indent=1) + "\n")


def eval_summary(result: EvalResult, manifest: Manifest) -> dict:
    return {
        "top1": result.top1, "top5": result.top5, "loss": result.loss, "eval_images": result.images,
        "per_supercategory": result.per_supercategory(manifest),
    }


# ---------------------------------------------------------------- training

def _check_classes(train: Manifest, val: Manifest | None, num_classes: int, cfg: Config) -> None:
    if cfg.model.num_classes is None and val is not None:
        if [c.id for c in val.classes] != [c.id for c in train.classes]:
            raise UserError(f"{cfg.data.val}: its classes differ from the train beton's ({cfg.data.train}); "
                            "labels would not mean the same thing")
    if val is not None and val.num_classes > num_classes:
        raise UserError(f"{cfg.data.val} has {val.num_classes} classes but the model has {num_classes}")


def _param_groups(model: nn.Module, cfg: Config) -> list[dict]:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not cfg.optim.no_bn_bias_decay:
        return [{"params": [p for _, p in params]}]
    # BatchNorm weights and all biases are 1-D; decaying them only hurts (Goyal et al. 2017).
    decay = [p for _, p in params if p.ndim > 1]
    no_decay = [p for _, p in params if p.ndim <= 1]
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _prepare_run_dir(cfg: Config, resume: bool, info: DistInfo) -> Path:
    if cfg.out is None:
        if info.distributed:
            raise UserError("a distributed run needs --out RUN_DIR (every process must agree on it)")
        cfg.out = f"runs/{Path(cfg.recipe).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.out)
    stored = run_dir / "config.yaml"
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} is a file")
    if not resume and run_dir.is_dir() and any(run_dir.iterdir()):
        raise UserError(f"run dir {run_dir} exists: pass --resume to continue it, or choose another --out")
    if resume and stored.is_file():
        old = _flat(yaml.safe_load(stored.read_text()) or {})
        new = _flat(to_dict(cfg))
        # `out` may be spelled differently (./run vs run): it is this directory either way.
        diff = sorted(k for k in set(old) | set(new) if k != "out" and old.get(k) != new.get(k))
        if diff:
            raise UserError(f"--resume: the config differs from {stored} in {', '.join(diff)}")
    barrier(info)  # every process has checked before rank 0 creates anything
    if info.is_main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        if not stored.is_file():
            with atomic_outputs(stored) as (tmp,):
                tmp.write_text(to_yaml(cfg))
    barrier(info)
    return run_dir


def _write_log(run_dir: Path, history: list[dict]) -> None:
    with atomic_outputs(run_dir / "log.jsonl") as (tmp,):
        tmp.write_text("".join(json.dumps(h) + "\n" for h in history))


def train(cfg: Config, *, resume: bool = False) -> dict:
    """Train as `cfg` says; return the summary (also written to RUN_DIR/summary.json)."""
    validate(cfg)
    info = setup(cfg.device)
    try:
        return _train(cfg, resume, info)
    finally:
        teardown(info)


def _train(cfg: Config, resume: bool, info: DistInfo) -> dict:
    wall_start = time.perf_counter()
    run_dir = _prepare_run_dir(cfg, resume, info)
    summary_path = run_dir / "summary.json"
    if resume and summary_path.is_file():
        if info.is_main:
            print(f"{run_dir} is already complete", file=sys.stderr)
        return json.loads(summary_path.read_text())

    dev = info.device
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    amp = amp_dtype(cfg.precision, dev)
    train_manifest = read_manifest(cfg.data.train)
    val_manifest = read_manifest(cfg.data.val) if cfg.data.val else None
    num_classes = cfg.model.num_classes or train_manifest.num_classes
    _check_classes(train_manifest, val_manifest, num_classes, cfg)

    ckpt_path = run_dir / "checkpoints" / "last.pt"
    ckpt = load_file(ckpt_path) if resume and ckpt_path.is_file() else None
    seed_everything(cfg.seed)
    head_replaced = False
    if cfg.model.init and ckpt is None:
        state = model_state(load_file(cfg.model.init), cfg.model.init)
        model = build_model(checkpoint_num_classes(state, cfg.model.init), blurpool=cfg.model.blurpool)
        load_weights(model, state, cfg.model.init)
        head_replaced = replace_head(model, num_classes)
    else:
        model = build_model(num_classes, blurpool=cfg.model.blurpool, zero_init_residual=cfg.model.zero_init_residual)
    apply_freeze(model, cfg.model.freeze)
    model.to(dev)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)

    optimizer = torch.optim.SGD(_param_groups(model, cfg), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                weight_decay=cfg.optim.weight_decay, nesterov=cfg.optim.nesterov)
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
    start_epoch, history, wall_before = 0, [], 0.0
    if ckpt is not None:
        load_weights(model, model_state(ckpt, str(ckpt_path)), str(ckpt_path))
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
        wall_before = float(ckpt["wall_seconds"])
        head_replaced = bool(ckpt.get("head_replaced", False))
        set_rng_state(ckpt["rng"])
        if info.is_main:
            _write_log(run_dir, history)  # the log may lag or lead the checkpoint by an epoch
        del ckpt

    net: nn.Module = model
    if info.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)

    batch = per_process_batch(cfg.data.batch_size, info.world_size)
    train_loader = make_loader(
        cfg.data.train, batch_size=batch, res=res_at(cfg.progressive, cfg.data.res, start_epoch), train=True,
        device=dev, workers=cfg.data.workers, augment=cfg.data.augment, distributed=info.distributed,
        seed=cfg.seed, os_cache=cfg.data.os_cache,
    )
    if len(train_loader) == 0:
        raise UserError(f"{cfg.data.train}: {train_manifest.num_images} images per {info.world_size} "
                        f"process(es) make no full batch of {batch}; lower data.batch_size")
    train_loader.loader.next_epoch = start_epoch  # the shuffle order is a function of (seed, epoch)
    val_loader = None
    if cfg.data.val:
        val_loader = make_loader(
            cfg.data.val, batch_size=cfg.eval.batch_size or batch, res=cfg.data.val_res, train=False,
            device=dev, workers=cfg.data.workers, distributed=info.distributed, os_cache=cfg.data.os_cache,
        )
    steps_per_epoch = len(train_loader)
    if cfg.schedule.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.schedule.max_steps_per_epoch)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)

    def run_eval() -> EvalResult:
        return evaluate(net, val_loader, num_classes, info, total_images=val_manifest.num_images, amp=amp,
                        tta_flip=cfg.eval.tta_flip)

    last_eval: EvalResult | None = None
    epochs = cfg.schedule.epochs
    bar = tqdm(range(start_epoch, epochs), initial=start_epoch, total=epochs, desc="epochs",
               disable=not info.is_main, dynamic_ncols=True)
    for epoch in bar:
        res = res_at(cfg.progressive, cfg.data.res, epoch)
        train_loader.set_resolution(res)
        net.train()
        set_train_mode(model, cfg.model.freeze)
        loss_sum = torch.zeros((), dtype=torch.float32, device=dev)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        steps, lr = 0, cfg.optim.lr
        iterator = iter(train_loader)
        try:
            for images, labels in iterator:
                if steps == steps_per_epoch:
                    break
                lr = lr_at(cfg.schedule, cfg.optim.lr, epoch, steps, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x = _model_input(images, train_loader, amp)
                with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                    loss = criterion(net(x), labels.long())
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                loss_sum += loss.detach().float()
                steps += 1
                if cfg.log_every and steps % cfg.log_every == 0 and info.is_main:
                    bar.set_postfix(step=f"{steps}/{steps_per_epoch}", loss=f"{loss.item():.3f}", res=res)
        finally:
            stop_epoch(iterator)  # stop ffcv's loading thread, also when we leave the epoch early
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        train_loss = float(all_reduce_sum(loss_sum, info)) / max(1, steps * info.world_size)
        if not math.isfinite(train_loss):
            raise UserError(f"train loss is {train_loss} in epoch {epoch + 1}: the run diverged (lower optim.lr)")
        images_done = steps * batch * info.world_size
        last_eval = None
        if val_loader is not None and ((cfg.eval.every and (epoch + 1) % cfg.eval.every == 0) or epoch + 1 == epochs):
            last_eval = run_eval()
        record = {
            "epoch": epoch + 1, "lr": lr, "train_loss": train_loss,
            "top1": last_eval.top1 if last_eval else None, "top5": last_eval.top5 if last_eval else None,
            "val_loss": last_eval.loss if last_eval else None, "epoch_seconds": seconds,
            "train_images_per_second": images_done / seconds if seconds > 0 else None,
            "steps": steps, "images": images_done, "res": res,
        }
        history.append(record)
        bar.set_postfix(loss=f"{train_loss:.3f}", top1=record["top1"], res=res)
        if info.is_main:
            save_checkpoint(ckpt_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "epoch": epoch + 1, "history": history, "rng": rng_state(), "config": to_yaml(cfg),
                "num_classes": num_classes, "head_replaced": head_replaced,
                "wall_seconds": wall_before + time.perf_counter() - wall_start,
            })
            _write_log(run_dir, history)
    bar.close()

    final = last_eval
    if final is None and val_loader is not None:
        final = run_eval()  # a run resumed after its last epoch, or one without a final-epoch eval
    train_seconds = sum(h["epoch_seconds"] for h in history)
    summary = {
        "recipe": cfg.recipe, "run_dir": str(run_dir),
        "top1": None, "top5": None, "loss": None, "eval_images": None, "per_supercategory": {},
        "train_loss": history[-1]["train_loss"] if history else None,
        "train_images_per_second": sum(h["images"] for h in history) / train_seconds if train_seconds else None,
        "wall_seconds": wall_before + time.perf_counter() - wall_start,
        "epochs": epochs, "max_steps_per_epoch": cfg.schedule.max_steps_per_epoch,
        "steps_per_epoch": steps_per_epoch, "batch_size": cfg.data.batch_size, "world_size": info.world_size,
        "device": device_name(dev, info.world_size), "precision": precision_name(amp),
        "compile": cfg.compile, "channels_last": cfg.channels_last, "versions": versions(),
        "train_beton": cfg.data.train, "val_beton": cfg.data.val, "init": cfg.model.init,
        "freeze": cfg.model.freeze, "head_replaced": head_replaced, "num_classes": num_classes,
        "checkpoint": str(ckpt_path),
        # This process's high-water mark of allocated GPU memory (None on CPU).
        "peak_gpu_memory_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
    }
    if final is not None:
        summary.update(eval_summary(final, val_manifest))
    if info.is_main:
        if final is not None:
            write_results(run_dir, val_manifest, final, summary)
        else:
            with atomic_outputs(summary_path) as (tmp,):
                tmp.write_text(json.dumps(summary, indent=1) + "\n")
    barrier(info)
    return summary


# ---------------------------------------------------------------- evaluating a checkpoint

def evaluate_checkpoint(checkpoint: str | Path, val: str | Path, out: str | Path | None = None, *,
                        batch_size: int = 256, res: int | None = None, workers: int = 8, tta_flip: bool = False,
                        device: str = "auto", precision: str = "bf16") -> dict:
    """Evaluate an ffcv-train checkpoint or torchvision state_dict on a val beton.

    res defaults to the checkpoint's data.val_res (224 for a plain state_dict). With `out`,
    writes per_class.csv and summary.json there (refusing to replace existing results).
    """
    checkpoint, val = str(checkpoint), str(val)
    obj = load_file(checkpoint)
    state = model_state(obj, checkpoint)
    num_classes = checkpoint_num_classes(state, checkpoint)
    trained = None
    if isinstance(obj, dict) and obj.get("format") == FORMAT and obj.get("config"):
        trained = config_from_dict(yaml.safe_load(obj["config"]), f"{checkpoint} (config)")
    manifest = read_manifest(val)
    if manifest.num_classes != num_classes:
        raise UserError(f"{val} has {manifest.num_classes} classes but {checkpoint} predicts {num_classes}")
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        for name in ("summary.json", "per_class.csv"):
            if (out_dir / name).exists():
                raise UserError(f"{out_dir / name} exists: choose another --out")
    info = setup(device)
    try:
        wall_start = time.perf_counter()
        model = build_model(num_classes, blurpool=trained.model.blurpool if trained else False)
        load_weights(model, state, checkpoint)
        model = model.to(info.device, memory_format=torch.channels_last)
        res = res or (trained.data.val_res if trained else 224)
        loader = make_loader(val, batch_size=per_process_batch(batch_size, info.world_size), res=res, train=False,
                             device=info.device, workers=workers, distributed=info.distributed)
        amp = amp_dtype(precision, info.device)
        result = evaluate(model, loader, num_classes, info, total_images=manifest.num_images, amp=amp,
                          tta_flip=tta_flip)
        summary = {
            "checkpoint": checkpoint, "val_beton": val, "num_classes": num_classes, "res": res,
            "tta_flip": tta_flip, "recipe": trained.recipe if trained else None,
            **eval_summary(result, manifest),
            "wall_seconds": time.perf_counter() - wall_start, "device": device_name(info.device, info.world_size),
            "precision": precision_name(amp), "versions": versions(),
        }
        if out_dir is not None and info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_results(out_dir, manifest, result, summary)
        return summary
    finally:
        teardown(info)
