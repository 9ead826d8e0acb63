"""The training loop: `train(cfg) -> summary`, read top to bottom as the recipe.

    train                       set up (torchrun or one process), run, tear down
      run_training              the recipe, step by step:
        prepare_run_dir           config.yaml, or the checks of --resume
        read_data                 manifests, classes, the number of outputs
        build_model_and_optimizer init / head / freeze / restore from last.pt
        create_loaders            train (shuffled, augmented) and val (sequential)
        train_one_epoch           the per-step code: LR, forward, backward, step
        epoch_record              one line of log.jsonl
        save_progress             checkpoints (last.pt, best.pt, kept epochs) and log.jsonl
        run_summary               summary.json's contents

Fast path on a GPU (as ffcv-imagenet): batches arrive on the device already normalised by the
loader (float16 from the CPU path's pipeline, the precision's input dtype from the GPU path),
the model is channels-last under bf16 autocast, the LR is set per iteration
from a pure function, and nothing in the step waits for the GPU: the loss is summed on the
device and read back only every `log_every` steps and at the end of the epoch.

Run directory (written by rank 0 only): config.yaml, log.jsonl, checkpoints/ (last.pt,
best.pt, epoch_N.pt), tensorboard/, per_class.csv and, last of all, summary.json (its presence
means the run completed). Progress inside an epoch: progress.py; TensorBoard: tensorboard_log.py;
evaluation: ../evaluation.py.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from .. import UserError
from ..atomic import atomic_outputs, format_size, free_bytes, mount_of, require_room
from ..beton import Manifest, check_beton
from ..checkpoint import (
    checkpoint_bytes,
    checkpoint_num_classes,
    load_file,
    load_weights,
    model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ..config import Config, config_from_dict, flatten, to_dict, to_yaml, validate
from ..distributed import DistInfo, all_reduce_sum, barrier, per_process_batch, setup, teardown
from ..environment import device_name, input_dtype, run_precision, versions
from ..evaluation import EvalResult, evaluate, write_results
from ..failures import Diverged, OutOfMemory, out_of_memory_line
from ..loader import AnyLoader, make_loader, resolve_decode, training_crop
from ..model import apply_freeze, build_model, replace_head, set_train_mode
from ..rundir import BEST_CHECKPOINT, CHECKPOINT, CONFIG, LOG, kept_checkpoint, read_summary
from ..schedule import lr_at, res_at
from .progress import StepProgress
from .step import TrainStep, make_optimizer
from .tensorboard_log import TensorBoardLog, open_board


def train(cfg: Config, *, resume: bool = False, space_check: bool = True) -> dict:
    """Train as `cfg` says; return the summary (also written to RUN_DIR/summary.json).
    `space_check`: refuse to start where the run dir has no room for the checkpoints it will hold."""
    validate(cfg)
    info = setup(cfg.device)
    try:
        return run_training(cfg, resume, info, space_check)
    finally:
        teardown(info)


def run_training(cfg: Config, resume: bool, info: DistInfo, space_check: bool = True) -> dict:
    wall_start = time.perf_counter()
    # data.decode resolved once, before any file: gpu without CUDA is one line and no run dir.
    decode = resolve_decode(cfg.data.decode, info.device)
    run_dir = prepare_run_dir(cfg, resume, info)
    done = read_summary(run_dir) if resume else None  # a corrupt summary.json: run (again) to the end
    if done is not None:
        if info.is_main:
            print(f"{run_dir} is already complete", file=sys.stderr)
        return done
    if info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = read_data(cfg, decode)
    ckpt_path = run_dir / CHECKPOINT
    t = build_model_and_optimizer(cfg, data.num_classes, info, ckpt_path if resume else None)
    if info.is_main and space_check:
        files = checkpoint_files(cfg, t.start_epoch, evaluates=data.val is not None)
        check_checkpoint_room(ckpt_path, checkpoint_bytes(t.model, t.step.optimizer), files)
    if t.history and info.is_main:
        write_log(run_dir, t.history)  # the log may lag or lead the checkpoint by an epoch
    train_loader, val_loader = create_loaders(cfg, info, data, t.start_epoch)
    steps_per_epoch = len(train_loader)
    if cfg.schedule.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.schedule.max_steps_per_epoch)

    last_eval: EvalResult | None = None
    epochs = cfg.schedule.epochs
    mode = cfg.logging.progress if info.is_main else "off"
    progress = StepProgress(mode, epochs, cfg.data.batch_size, cfg.logging.every_seconds)
    board = None
    if cfg.logging.tensorboard and info.is_main:
        board = open_board(run_dir, purge_from=t.start_epoch * steps_per_epoch + 1 if resume else None)
    try:
        for epoch in range(t.start_epoch, epochs):
            res = res_at(cfg.progressive, cfg.data.res, epoch)
            train_loader.set_resolution(res)
            train_loader.set_epoch(epoch)  # shuffle order and crops of this epoch, also the first after --resume
            loss, steps, lr, seconds = train_one_epoch(
                t, train_loader, cfg, info, epoch, steps_per_epoch, progress, board
            )
            last_eval = None
            if val_loader is not None and evaluates_after(cfg, epoch + 1):
                last_eval = _run_eval(t, val_loader, cfg, info, data)
            wall = t.wall_before + time.perf_counter() - wall_start
            record = epoch_record(epoch, lr, loss, last_eval, seconds, steps, cfg.data.batch_size, res, data.val, wall)
            t.history.append(record)
            progress.end_epoch(epoch_line(record, epochs))
            if board is not None:  # on disk before the checkpoint: a resume purges it, never misses it
                board.log_epoch(record, (epoch + 1) * steps_per_epoch)
            if info.is_main:
                save_progress(run_dir, t, cfg, epoch + 1, data, wall)
    finally:
        if board is not None:
            board.close()

    final = last_eval
    if final is None and val_loader is not None:  # resumed after its last epoch, or no final-epoch eval
        final = _run_eval(t, val_loader, cfg, info, data)
    summary = run_summary(
        cfg, run_dir, t, data, info, steps_per_epoch, wall_seconds=t.wall_before + time.perf_counter() - wall_start
    )
    if final is not None:
        summary.update(final.summary(data.val))
    if info.is_main:
        write_results(run_dir, data.val, final, summary)
    barrier(info)
    return summary


def _run_eval(t: Training, val_loader: AnyLoader, cfg: Config, info: DistInfo, data: RunData) -> EvalResult:
    """Evaluate the model on the val loader; running out of GPU memory is a one-line error naming the knobs."""
    try:
        return evaluate(
            t.net,
            val_loader,
            data.num_classes,
            info,
            total_images=data.val.num_images,
            precision=t.step.precision,
            tta_flip=cfg.eval.tta_flip,
        )
    except torch.OutOfMemoryError:
        raise out_of_memory(
            info,
            t.step.precision,
            ("eval.batch_size", cfg.eval.batch_size or cfg.data.batch_size),
            ("data.val_res", cfg.data.val_res),
        ) from None


# ---------------------------------------------------------------- the steps of a run


def prepare_run_dir(cfg: Config, resume: bool, info: DistInfo) -> Path:
    """Create RUN_DIR with config.yaml, or (--resume) check that the config is the stored one."""
    if cfg.out is None:
        if info.distributed:
            raise UserError("a distributed run needs --out RUN_DIR (every process must agree on it)")
        cfg.out = f"runs/{Path(cfg.recipe).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.out)
    stored = run_dir / CONFIG
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir} is a file")
    if not resume and run_dir.is_dir() and any(run_dir.iterdir()):
        raise UserError(f"run dir {run_dir} exists: pass --resume to continue it, or choose another --out")
    if resume and stored.is_file():
        stored_data = yaml.safe_load(stored.read_text()) or {}
        # Compared as today's Config types them; a key added to Config since the run started is
        # not in the stored file and may take any value (its default, or a --set).
        old = flatten(to_dict(config_from_dict(stored_data, str(stored))))
        new = flatten(to_dict(cfg))
        known = set(flatten(stored_data))
        # `out` may be spelled differently (./run vs run): it is this directory either way.
        diff = sorted(k for k in known if k != "out" and old.get(k) != new.get(k))
        if diff:
            raise UserError(f"--resume: the config differs from {stored} in {', '.join(diff)}")
    barrier(info)  # every process has checked before rank 0 creates anything
    if info.is_main:
        (run_dir / CHECKPOINT).parent.mkdir(parents=True, exist_ok=True)
        if not stored.is_file():
            with atomic_outputs(stored) as (tmp,):
                tmp.write_text(to_yaml(cfg))
    barrier(info)
    return run_dir


def evaluates_after(cfg: Config, epoch: int) -> bool:
    """Whether the run evaluates after `epoch` (1-based): every eval.every epochs, and after the last."""
    return bool(cfg.eval.every and epoch % cfg.eval.every == 0) or epoch == cfg.schedule.epochs


def checkpoint_files(cfg: Config, start_epoch: int, *, evaluates: bool) -> int:
    """Checkpoint-sized files the rest of the run adds to the disk at most, at its last write
    (the peak): the new last.pt written beside the current one; that current one, when this run
    wrote it; a best.pt this run wrote before it (an older one is on the disk already); and the
    epoch_N.pt this run kept before it. best.pt and epoch_N.pt are links of a last.pt, so they
    add room only once last.pt has moved on."""
    writes = cfg.schedule.epochs - start_epoch
    if writes <= 0:
        return 0
    before_last_two = range(start_epoch + 1, cfg.schedule.epochs - 1)  # epochs whose file can outlive last.pt
    keep = cfg.checkpoint.keep_every
    kept = sum(1 for e in before_last_two if keep and e % keep == 0)
    best = evaluates and any(evaluates_after(cfg, e) for e in before_last_two)
    return 1 + (writes >= 2) + best + kept


def check_checkpoint_room(ckpt_path: Path, size: int, files: int) -> None:
    """Refuse to start a run whose checkpoints will not fit (`files` of `size`: checkpoint_files);
    say the estimate."""
    count = "one more checkpoint" if files == 1 else f"{files} checkpoints"
    require_room(
        ckpt_path,
        files * size,
        estimate=f"{count} of ≈ {format_size(size)} (model and optimiser state; a new last.pt is written "
        "beside the old; best.pt and kept epochs stay)",
        override="free some space, choose another --out, or pass --no-space-check",
    )
    print(
        f"checkpoints: ≈ {format_size(size)} each, {format_size(free_bytes(ckpt_path.parent))} free on "
        f"{mount_of(ckpt_path)}",
        file=sys.stderr,
    )


@dataclass(frozen=True)
class RunData:
    train: Manifest  # checked against its beton: the loaders take it and do not check again
    val: Manifest | None
    num_classes: int  # outputs of the model's head
    decode: str  # where the run decodes its JPEGs, resolved: "cpu" or "gpu"


def read_data(cfg: Config, decode: str) -> RunData:
    """The betons' manifests, each checked against its beton (size, sample count, labels) before
    anything else touches it, and a check that train and val labels mean the same classes.
    `decode`: data.decode as `resolve_decode` resolved it for this run."""
    train = check_beton(cfg.data.train)
    val = check_beton(cfg.data.val) if cfg.data.val else None
    num_classes = cfg.model.num_classes or train.num_classes
    if cfg.model.num_classes is None and val is not None:
        if [c.id for c in val.classes] != [c.id for c in train.classes]:
            raise UserError(
                f"{cfg.data.val}: its classes differ from the train beton's ({cfg.data.train}); "
                "labels would not mean the same thing"
            )
    if val is not None and val.num_classes > num_classes:
        raise UserError(f"{cfg.data.val} has {val.num_classes} classes but the model has {num_classes}")
    return RunData(train, val, num_classes, decode)


@dataclass
class Training:
    """What the loop updates: the model, its step, and where the run stands."""

    model: nn.Module  # the plain module: its state_dict is what checkpoints hold
    net: nn.Module  # what runs: the model, wrapped in DDP and/or compiled
    step: TrainStep
    start_epoch: int
    history: list[dict]  # one record per completed epoch (log.jsonl)
    wall_before: float  # wall seconds of earlier attempts (resume)
    head_replaced: bool

    def train_mode(self, freeze: str) -> None:
        """Training mode, except frozen parts (their BatchNorm keeps its running statistics)."""
        self.net.train()
        set_train_mode(self.model, freeze)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model_and_optimizer(
    cfg: Config, num_classes: int, info: DistInfo, checkpoint: Path | None = None
) -> Training:
    """ResNet-50 as the recipe says (random init, or model.init with a new head where the class
    count differs), frozen parts, SGD; restored from `checkpoint` (last.pt) if it exists."""
    dev = info.device
    ckpt = load_file(checkpoint) if checkpoint is not None and checkpoint.is_file() else None
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
    optimizer = make_optimizer(model, cfg.optim)
    start_epoch, history, wall_before = 0, [], 0.0
    if ckpt is not None:
        load_weights(model, model_state(ckpt, str(checkpoint)), str(checkpoint))
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
        wall_before = float(ckpt["wall_seconds"])
        head_replaced = bool(ckpt.get("head_replaced", False))
        set_rng_state(ckpt["rng"])

    net: nn.Module = model
    if info.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    step = TrainStep(net, optimizer, cfg.optim, run_precision(cfg.precision, dev))
    if ckpt is not None:
        step.scaler.load_state_dict(ckpt["scaler"])
    return Training(model, net, step, start_epoch, history, wall_before, head_replaced)


def create_loaders(cfg: Config, info: DistInfo, data: RunData, start_epoch: int) -> tuple[AnyLoader, AnyLoader | None]:
    batch = per_process_batch(cfg.data.batch_size, info.world_size)
    train_loader = make_loader(
        cfg.data.train,
        batch_size=batch,
        res=res_at(cfg.progressive, cfg.data.res, start_epoch),
        train=True,
        device=info.device,
        workers=cfg.data.workers,
        augment=cfg.data.augment,
        crop=cfg.data.crop,
        distributed=info.distributed,
        seed=cfg.seed,
        os_cache=cfg.data.os_cache,
        decode=data.decode,
        dtype=input_dtype(run_precision(cfg.precision, info.device)),
        manifest=data.train,
    )
    if len(train_loader) == 0:
        raise UserError(
            f"{cfg.data.train}: {data.train.num_images} images per {info.world_size} "
            f"process(es) make no full batch of {batch}; lower data.batch_size"
        )
    val_loader = None
    if cfg.data.val:
        val_loader = make_loader(
            cfg.data.val,
            batch_size=per_process_batch(cfg.eval.batch_size or cfg.data.batch_size, info.world_size),
            res=cfg.data.val_res,
            train=False,
            device=info.device,
            workers=cfg.data.workers,
            distributed=info.distributed,
            os_cache=cfg.data.os_cache,
            decode=data.decode,
            dtype=input_dtype(run_precision(cfg.precision, info.device)),
            manifest=data.val,
        )
    return train_loader, val_loader


def train_one_epoch(
    t: Training,
    loader: AnyLoader,
    cfg: Config,
    info: DistInfo,
    epoch: int,
    steps_per_epoch: int,
    progress: StepProgress,
    board: TensorBoardLog | None = None,
) -> tuple[float, int, float, float]:
    """(mean train loss over all processes, steps, last LR, seconds) of one epoch. The loss is
    read back from the device every `log_every` steps only (for the progress and TensorBoard)."""
    dev = info.device
    t.train_mode(cfg.model.freeze)
    loss_sum = torch.zeros((), dtype=torch.float32, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    steps, lr = 0, cfg.optim.lr
    progress.start_epoch(epoch, steps_per_epoch)
    logged_at, logged_time = 0, t0
    try:
        with loader.start_epoch() as batches:  # its end stops the loader's threads, also on an early exit
            for images, labels in batches:
                if steps == steps_per_epoch:
                    break
                lr = lr_at(cfg.schedule, cfg.optim.lr, epoch, steps, steps_per_epoch)
                loss = t.step(images, labels, lr)
                loss_sum += loss.float()
                steps += 1
                value = None
                if cfg.log_every and steps % cfg.log_every == 0 and info.is_main:
                    value = loss.item()
                    if board is not None:
                        now = time.perf_counter()
                        rate = (steps - logged_at) * cfg.data.batch_size / max(now - logged_time, 1e-9)
                        board.log_step(epoch * steps_per_epoch + steps, value, lr, rate)
                        logged_at, logged_time = steps, now
                progress.step(steps, lr, value)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            seconds = time.perf_counter() - t0  # the epoch's steps, not the stopping of the loader
    except torch.OutOfMemoryError:
        raise out_of_memory(
            info,
            t.step.precision,
            ("data.batch_size", cfg.data.batch_size),
            ("data.res", res_at(cfg.progressive, cfg.data.res, epoch)),
        ) from None
    train_loss = float(all_reduce_sum(loss_sum, info)) / max(1, steps * info.world_size)
    if not math.isfinite(train_loss):
        raise Diverged(f"train loss is {train_loss} in epoch {epoch + 1}: the run diverged (lower optim.lr)")
    return train_loss, steps, lr, seconds


def out_of_memory(info: DistInfo, precision: str, batch: tuple[str, int], res: tuple[str, int]) -> OutOfMemory:
    """CUDA's out-of-memory error in a training or evaluation step as one line: the settings
    ((config key, value) of the batch size and the resolution), the peak, what to change."""
    peak = total = None
    if info.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(info.device) / 2**20
        total = torch.cuda.get_device_properties(info.device).total_memory / 2**20
    return OutOfMemory(out_of_memory_line(batch, res, info.world_size, precision, peak, total))


def epoch_record(
    epoch: int,
    lr: float,
    train_loss: float,
    result: EvalResult | None,
    seconds: float,
    steps: int,
    global_batch: int,
    res: int,
    val: Manifest | None = None,
    wall_seconds: float | None = None,
) -> dict:
    """One line of log.jsonl (`val`: the evaluated beton's manifest, for per-supercategory accuracy;
    `wall_seconds`: the run's wall time so far, across resumes, which ffcv-sweep status's ETA reads)."""
    images = steps * global_batch
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": train_loss,
        "top1": result.top1 if result else None,
        "top5": result.top5 if result else None,
        "val_loss": result.loss if result else None,
        "per_supercategory": result.per_supercategory(val) if result and val else None,
        "epoch_seconds": seconds,
        "train_images_per_second": images / seconds if seconds > 0 else None,
        "steps": steps,
        "images": images,
        "res": res,
        "wall_seconds": wall_seconds,
    }


def epoch_line(record: dict, epochs: int) -> str:
    """The line that closes an epoch's progress."""
    top1 = "" if record["top1"] is None else f", top1 {record['top1']:.4f}"
    rate = record["train_images_per_second"]
    return (
        f"epoch {record['epoch']}/{epochs} done: train loss {record['train_loss']:.4f}{top1}, "
        f"{record['epoch_seconds']:.1f} s, {0 if rate is None else rate:,.0f} img/s"
    )


def is_best(history: list[dict]) -> bool:
    """Whether the last epoch's top-1 is above every earlier one (the first of equals stays best)."""
    last = history[-1]["top1"] if history else None
    return last is not None and all(h["top1"] is None or h["top1"] < last for h in history[:-1])


def extra_checkpoints(run_dir: Path, history: list[dict], keep_every: int) -> tuple[Path, ...]:
    """The files besides last.pt that the last epoch's checkpoint also goes to: best.pt, epoch_N.pt."""
    epoch = history[-1]["epoch"]
    out = [run_dir / BEST_CHECKPOINT] if is_best(history) else []
    if keep_every and epoch % keep_every == 0:
        out.append(kept_checkpoint(run_dir, epoch))
    return tuple(out)


def write_log(run_dir: Path, history: list[dict]) -> None:
    with atomic_outputs(run_dir / LOG) as (tmp,):
        tmp.write_text("".join(json.dumps(h) + "\n" for h in history))


def save_progress(
    run_dir: Path, t: Training, cfg: Config, epochs_done: int, data: RunData, wall_seconds: float
) -> None:
    """checkpoints/last.pt (everything --resume needs) and best.pt / epoch_N.pt where due, then log.jsonl."""
    save_checkpoint(
        run_dir / CHECKPOINT,
        {
            "model": t.model.state_dict(),
            "optimizer": t.step.optimizer.state_dict(),
            "scaler": t.step.scaler.state_dict(),
            "epoch": epochs_done,
            "history": t.history,
            "rng": rng_state(),
            "config": to_yaml(cfg),
            "num_classes": data.num_classes,
            # The head's classes in label order, (id, name): what `ffcv-train export` writes beside the weights.
            "classes": [[c.id, c.name] for c in data.train.classes],
            "head_replaced": t.head_replaced,
            "wall_seconds": wall_seconds,
        },
        also=extra_checkpoints(run_dir, t.history, cfg.checkpoint.keep_every),
    )
    write_log(run_dir, t.history)


def run_summary(
    cfg: Config, run_dir: Path, t: Training, data: RunData, info: DistInfo, steps_per_epoch: int, wall_seconds: float
) -> dict:
    """summary.json without the evaluation's metrics (EvalResult.summary adds them)."""
    dev = info.device
    train_seconds = sum(h["epoch_seconds"] for h in t.history)
    return {
        "recipe": cfg.recipe,
        "run_dir": str(run_dir),
        "top1": None,
        "top5": None,
        "loss": None,
        "eval_images": None,
        "per_supercategory": {},
        "train_loss": t.history[-1]["train_loss"] if t.history else None,
        "train_images_per_second": sum(h["images"] for h in t.history) / train_seconds if train_seconds else None,
        "wall_seconds": wall_seconds,
        "epochs": cfg.schedule.epochs,
        "max_steps_per_epoch": cfg.schedule.max_steps_per_epoch,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": cfg.data.batch_size,
        "world_size": info.world_size,
        # The augmentation: `seed` also draws the crops and flips when crop is "seeded".
        "seed": cfg.seed,
        "crop": training_crop(cfg.data.augment, cfg.data.crop),
        "decode": data.decode,  # where the JPEGs were decoded: cpu or gpu
        "device": device_name(dev, info.world_size),
        "precision": t.step.precision,
        "compile": cfg.compile,
        "channels_last": cfg.channels_last,
        "versions": versions(),
        "train_beton": cfg.data.train,
        "val_beton": cfg.data.val,
        "init": cfg.model.init,
        "freeze": cfg.model.freeze,
        "head_replaced": t.head_replaced,
        "num_classes": data.num_classes,
        "checkpoint": str(run_dir / CHECKPOINT),
        "best_checkpoint": str(run_dir / BEST_CHECKPOINT) if (run_dir / BEST_CHECKPOINT).is_file() else None,
        # This process's high-water mark of allocated GPU memory (None on CPU).
        "peak_gpu_memory_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
    }
