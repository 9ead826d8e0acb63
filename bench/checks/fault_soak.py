"""Fault soak: SIGKILL a short training run at random moments, resume it each time, and check
that it ends exactly as an uninterrupted run.

    ffcv-bench fault-soak [--kills 8] [--epochs 3] [--seed 0] [--work DIR]

Each kill is either at a random moment of the run (start-up, an epoch, an evaluation) or the
moment a checkpoint's temporary file appears (in the middle of torch.save); after each, the
run is restarted with `--resume`; a run that finishes before its kill is followed by a new one
until all kills have landed. Each run's final weights must equal the uninterrupted run's bit
for bit, its log.jsonl must list each epoch once, and no temporary may be left. On synthetic
32-px betons with the smoke recipe (CPU); tests/test_train_run.py runs a short version.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ffcv_inat import UserError
from ffcv_inat.atomic import temp_path_for
from ffcv_inat.rundir import CHECKPOINT, read_log

SMOKE_SETS = ("schedule.step_every=1", "data.augment=true")  # an LR step and seeded crops to replay
WAIT_LIMIT_S = 600  # one attempt of the smoke run takes ~20-60 s on 2 cores


def train_command(run: Path, train: Path, val: Path, epochs: int) -> list[str]:
    """ffcv-train --resume of the smoke recipe as its own process (its own start-up: a true
    restart); --resume also starts a run dir that a kill left without config.yaml."""
    cmd = [
        sys.executable,
        "-m",
        "ffcv_inat.training.cli",
        "--recipe",
        "smoke_cpu.yaml",
        "--train",
        str(train),
        "--val",
        str(val),
        "--out",
        str(run),
        "--set",
        f"schedule.epochs={epochs}",
    ]
    for item in SMOKE_SETS:
        cmd += ["--set", item]
    return cmd + ["--resume"]


def checkpoint_being_written(run: Path, pid: int) -> bool:
    """Process `pid`'s temporary of last.pt exists: it is in torch.save. (Not another pid's: a
    kill -9 leaves its temporary until the next checkpoint of the run replaces it.)"""
    return temp_path_for(run / CHECKPOINT, pid).exists()


@dataclass
class Kill:
    moment: str  # "random" or "checkpoint write"
    after_s: float
    killed: bool  # False: the run finished before the moment came


@dataclass
class SoakResult:
    kills: list[Kill] = field(default_factory=list)
    runs: list[Path] = field(default_factory=list)  # one per round: a run killed until it finished
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def run_until_killed(cmd: Sequence[str], run: Path, moment: str, delay_s: float) -> Kill:
    """Start `cmd`; SIGKILL it after `delay_s` (moment "random") or as soon as a checkpoint is
    being written (moment "checkpoint write"), unless it ends first."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    deadline = start + WAIT_LIMIT_S
    while proc.poll() is None and time.monotonic() < deadline:
        if moment == "checkpoint write":
            due = checkpoint_being_written(run, proc.pid)
        else:
            due = time.monotonic() - start >= delay_s
        if due:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return Kill(moment, round(time.monotonic() - start, 2), True)
        time.sleep(0.002)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    return Kill(moment, round(time.monotonic() - start, 2), False)


def compare_runs(run: Path, reference: Path, epochs: int) -> list[str]:
    """What differs between a resumed run and the uninterrupted reference (empty: nothing)."""
    import torch

    problems = []
    epochs_logged = [h["epoch"] for h in read_log(run)]
    if epochs_logged != list(range(1, epochs + 1)):
        problems.append(f"log.jsonl lists epochs {epochs_logged}, not each of 1..{epochs} once")
    got = torch.load(run / CHECKPOINT, weights_only=True)["model"]
    ref = torch.load(reference / CHECKPOINT, weights_only=True)["model"]
    differing = [k for k in ref if not torch.equal(ref[k], got[k])]
    if differing:
        problems.append(
            f"{len(differing)} of {len(ref)} tensors differ from the uninterrupted run, first {differing[0]}"
        )
    leftovers = [str(p) for p in run.rglob(".*.tmp")]
    if leftovers:
        problems.append(f"temporaries left: {', '.join(leftovers)}")
    return problems


def soak(
    work: Path, reference: Path, betons: tuple[Path, Path], epochs: int, kills: int, seed: int, max_delay_s: float
) -> SoakResult:
    """SIGKILL runs in WORK/run<i> `kills` times in all (every third kill during a checkpoint
    write, the others after a random delay up to `max_delay_s`), resuming after each; a run
    that finishes before its kill ends a round and the next round starts a new run. Each run,
    resumed to its end, is compared with `reference`."""
    rng = random.Random(seed)
    result = SoakResult()
    while sum(k.killed for k in result.kills) < kills and len(result.runs) < 3 * kills:
        run = work / f"run{len(result.runs)}"
        result.runs.append(run)
        while sum(k.killed for k in result.kills) < kills:
            moment = "checkpoint write" if len(result.kills) % 3 == 0 else "random"
            delay = rng.uniform(1.0, max_delay_s)
            kill = run_until_killed(train_command(run, *betons, epochs), run, moment, delay)
            result.kills.append(kill)
            if not kill.killed:
                break  # the run finished first
        final = subprocess.run(train_command(run, *betons, epochs), capture_output=True, text=True)
        if final.returncode != 0:
            last = (final.stderr.strip().splitlines() or ["?"])[-1]
            result.problems.append(f"{run.name}: the last --resume failed: {last}")
        else:
            result.problems += [f"{run.name}: {p}" for p in compare_runs(run, reference, epochs)]
    if sum(k.killed for k in result.kills) < kills:
        landed = sum(k.killed for k in result.kills)
        result.problems.append(f"only {landed} of {kills} kills landed before the runs ended")
    return result


def make_betons(root: Path) -> tuple[Path, Path]:
    """(train, val) betons of 4 ImageNet-A classes, 24 + 6 synthetic 40-px images each."""
    from ffcv_inat.classes import select_classes
    from ffcv_inat.synthetic import make_imagenet
    from ffcv_inat.writers.beton import WriteOptions
    from ffcv_inat.writers.imagenet import write_imagenet

    make_imagenet(root / "imagenet", 24, 6, size=40, wnids=select_classes("A", 4, 0))
    out = root / "train.beton", root / "val.beton"
    for split, path in zip(("train", "val"), out):
        write_imagenet(root / "imagenet", split, "A", 4, 0, path, WriteOptions(max_res=40, workers=2))
    return out


def run_fault_soak(kills: int, epochs: int, seed: int, work: str | None, echo=print) -> bool:
    """Kill a short ffcv-train run with SIGKILL KILLS times, resume it each time, and check that it
    ends bit-identical to an uninterrupted run with each epoch logged once; whether it did."""
    if work and Path(work).is_dir() and any(Path(work).iterdir()):
        raise UserError(f"--work {work} is not empty: its finished runs would take no kills")
    with tempfile.TemporaryDirectory(prefix="fault-soak-") as tmp:
        root = Path(work or tmp)
        betons = make_betons(root / "data")
        reference = root / "reference"
        start = time.monotonic()
        ref = subprocess.run(train_command(reference, *betons, epochs), capture_output=True, text=True)
        if ref.returncode != 0:
            last = (ref.stderr.strip().splitlines() or ["?"])[-1]
            raise UserError(f"the uninterrupted run failed: {last}")
        whole = time.monotonic() - start
        result = soak(root, reference, betons, epochs, kills, seed, max_delay_s=whole)
    for n, k in enumerate(result.kills, start=1):
        echo(f"kill {n}: {k.moment} after {k.after_s:.2f}s" + ("" if k.killed else ": the run had ended"))
    mid = sum(k.killed and k.moment == "checkpoint write" for k in result.kills)
    echo(
        f"{sum(k.killed for k in result.kills)} kills ({mid} mid-checkpoint) over {len(result.runs)} "
        f"run{'s' if len(result.runs) != 1 else ''} of {whole:.0f}s uninterrupted: "
        + (
            "OK, bit-identical to the uninterrupted run, each epoch logged once"
            if result.ok
            else "FAILED: " + "; ".join(result.problems)
        )
    )
    return result.ok
