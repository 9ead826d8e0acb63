"""End-to-end `ffcv-train` runs on tiny synthetic betons with the real ffcv, torch, torchvision.

One short from-scratch run (module fixture) is the reference for: learning, the run dir
contract, `ffcv-train eval`, resume-after-kill, and the init of a linear probe.
"""

import csv
import json
import math

import pytest
import torch
import yaml
from click.testing import CliRunner

from helpers.train_data import imagenet_a_betons, inat_betons
from ffcv_inat.config import config_from_dict
from ffcv_inat.training.cli import main

# The smoke recipe: 32 px, batch 16, zero-init residuals; 2 epochs with the LR / 10 at epoch 2,
# so resume also crosses an LR step; with augmentation on (the seeded RandomResizedCrop + flip),
# so resume must also replay the crops. A progress line at every step (not a terminal: lines).
SETS = ["schedule.epochs=2", "schedule.step_every=1", "data.augment=true", "logging.every_seconds=0"]
LOG_KEYS = {"epoch", "lr", "train_loss", "top1", "top5", "epoch_seconds", "train_images_per_second"}
SUMMARY_KEYS = {
    "recipe",
    "top1",
    "top5",
    "loss",
    "per_supercategory",
    "train_images_per_second",
    "wall_seconds",
    "epochs",
    "device",
    "versions",
    "train_beton",
    "val_beton",
    "init",
    "num_classes",
}


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def train_args(betons, out, *extra):
    train, val = betons
    args = ["--recipe", "smoke_cpu.yaml", "--train", train, "--val", val, "--out", out]
    for s in SETS:
        args += ["--set", s]
    return [str(a) for a in (*args, *extra)]


def read_log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    return {"A": imagenet_a_betons(root), "inat": inat_betons(root)}


@pytest.fixture(scope="module")
def reference_run(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "ref"
    result = cli(*train_args(data["A"], run))
    (run.parent / "ref_stderr.txt").write_text(result.stderr)
    return run


@pytest.mark.timeout(60)
def test_without_a_terminal_progress_is_a_line_per_interval(reference_run):
    """logging.every_seconds 0: a line after every step, with img/s, loss, lr and both ETAs (the
    smoke recipe reads the loss back every 5 steps: the lines between say the last one read)."""
    printed = (reference_run.parent / "ref_stderr.txt").read_text()
    steps = json.loads((reference_run / "summary.json").read_text())["steps_per_epoch"]
    lines = [ln for ln in printed.splitlines() if " step " in ln]
    assert [ln.split(" step ")[1].split()[0] for ln in lines] == [f"{s}/{steps}" for s in range(1, steps + 1)] * 2
    assert all(" img/s  loss " in ln and "  lr " in ln and "ETA epoch " in ln and ", run " in ln for ln in lines)
    assert lines[0].startswith("epoch 1/2 step 1/") and "loss ?" in lines[0]  # nothing read back yet
    assert lines[-1].endswith("ETA epoch 0:00, run 0:00") and "loss ?" not in lines[-1]
    assert "\r" not in printed  # no bar's carriage returns in a log file
    assert [ln.split(" done:")[0] for ln in printed.splitlines() if " done: " in ln] == ["epoch 1/2", "epoch 2/2"]


@pytest.mark.timeout(240)
def test_learns_and_writes_the_run_dir_contract(reference_run, data):
    run = reference_run
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints",
        "config.yaml",
        "log.jsonl",
        "per_class.csv",
        "summary.json",
        "tensorboard",
    ]
    # best.pt: the best evaluated epoch's checkpoint (the smoke recipe evaluates every epoch).
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    log = read_log(run)
    assert [h["epoch"] for h in log] == [1, 2] and all(LOG_KEYS <= set(h) for h in log)
    assert [h["lr"] for h in log] == pytest.approx([0.02, 0.002])
    # It learns: the held-out loss falls, and the train loss is below chance (ln 4). (The train
    # loss itself need not fall: each epoch is measured on new random crops, here as small as
    # 8% of a 40-px image, while the LR drops tenfold.)
    assert log[1]["val_loss"] < log[0]["val_loss"] and log[1]["train_loss"] < math.log(4)
    summary = json.loads((run / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["top1"] >= 0.5  # 4 classes: chance is 0.25
    assert summary["num_classes"] == 4 and summary["epochs"] == 2 and summary["eval_images"] == 24
    assert summary["per_supercategory"] == {"animal": summary["top1"]}
    assert summary["top1"] == log[-1]["top1"] and summary["init"] is None
    assert summary["seed"] == 0 and summary["crop"] == "seeded"
    cfg = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()), "config.yaml")
    assert cfg.recipe == "smoke_cpu.yaml" and cfg.schedule.epochs == 2 and cfg.data.train == str(data["A"][0])
    with open(run / "per_class.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["label", "id", "name", "supercategory", "images", "correct", "accuracy"]
    assert [int(r["label"]) for r in rows] == [0, 1, 2, 3] and all(r["images"] == "6" for r in rows)
    assert sum(int(r["correct"]) for r in rows) / 24 == pytest.approx(summary["top1"])


@pytest.mark.timeout(60)
def test_existing_run_dir_is_refused_without_resume(reference_run, data):
    result = CliRunner().invoke(main, train_args(data["A"], reference_run))
    assert result.exit_code == 1 and "exists: pass --resume" in result.output
    result = CliRunner().invoke(main, train_args(data["A"], reference_run, "--resume", "--set", "optim.lr=0.5"))
    assert result.exit_code == 1 and "config differs" in result.output and "optim.lr" in result.output
    # A completed run resumed is a no-op that returns its summary.
    result = CliRunner().invoke(main, ["--resume", "--out", str(reference_run)])
    assert result.exit_code == 0 and "top1" in result.output


@pytest.mark.timeout(120)
def test_eval_command_reproduces_the_run_metrics(reference_run, data, tmp_path):
    out = tmp_path / "eval"
    cli(
        "eval",
        "--checkpoint",
        reference_run / "checkpoints" / "last.pt",
        "--val",
        data["A"][1],
        "--out",
        out,
        "--batch-size",
        16,
        "--workers",
        2,
    )
    run_summary = json.loads((reference_run / "summary.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["top1"] == run_summary["top1"] and summary["top5"] == run_summary["top5"]
    assert summary["loss"] == pytest.approx(run_summary["loss"], rel=1e-5)
    assert (out / "per_class.csv").read_text() == (reference_run / "per_class.csv").read_text()
    # Wrong class count for the beton: a clear error.
    result = CliRunner().invoke(
        main, ["eval", "--checkpoint", str(reference_run / "checkpoints" / "last.pt"), "--val", str(data["inat"][1])]
    )
    assert result.exit_code == 1 and "classes but" in result.output


@pytest.mark.timeout(240)
def test_resume_after_kills_equals_uninterrupted(reference_run, data, tmp_path):
    """The fault soak, short: SIGKILL in the middle of a checkpoint write and at a random
    moment, --resume after each: the final weights equal the reference, each epoch is logged
    once, no temporary is left; with augmentation on, so the shuffle order and the seeded crops
    and flips, functions of (seed, epoch, image), must be replayed on resume."""
    from ffcv_inat.bench.checks.fault_soak import soak

    result = soak(tmp_path, reference_run, data["A"], epochs=2, kills=2, seed=0, max_delay_s=10)
    assert result.kills[0].moment == "checkpoint write" and result.kills[0].killed
    assert result.ok, result.problems
    for run in result.runs:
        assert (run / "per_class.csv").read_text() == (reference_run / "per_class.csv").read_text()


def assert_same_run(run, reference_run):
    """The final weights, the log (each epoch once) and the per-class results equal the reference's."""
    ref = torch.load(reference_run / "checkpoints" / "last.pt", weights_only=True)
    got = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert got["epoch"] == ref["epoch"] == 2
    for k, v in ref["model"].items():
        assert torch.equal(v, got["model"][k]), k
    strip = lambda log: [{k: v for k, v in h.items() if "second" not in k} for h in log]  # noqa: E731
    assert strip(read_log(run)) == strip(read_log(reference_run))
    assert (run / "per_class.csv").read_text() == (reference_run / "per_class.csv").read_text()


@pytest.mark.timeout(240)
def test_full_disk_is_refused_up_front_or_one_line_and_resumes_bit_identical(reference_run, data, small_disk):
    """A run dir with room for one checkpoint (~190 MB: ResNet-50 and its momentum) but not two:
    the start refuses it with the estimate; forced, the second checkpoint fails as one line,
    the first stays whole, no temporary is left; with room again, --resume ends as the reference."""
    disk = small_disk(300)
    run = disk.path / "run"
    ckpt = run / "checkpoints" / "last.pt"
    result = CliRunner().invoke(main, train_args(data["A"], run))
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert f"Error: {ckpt}: not enough room (needs ≈ " in result.output
    # epoch 1's last.pt and epoch 2's, written beside it (best.pt is a link of one of them)
    assert "2 checkpoints of ≈ 1" in result.output and f"free on {disk.path}); " in result.output
    assert not ckpt.exists()

    result = CliRunner().invoke(main, train_args(data["A"], run, "--resume", "--no-space-check"))
    assert result.exit_code == 1, result.output
    last_line = result.output.strip().splitlines()[-1]
    assert last_line.startswith(f"Error: {ckpt}: disk full (needs ≈ 1")
    assert last_line.endswith(f"free on {disk.path})")
    assert "Traceback" not in result.output
    # Epoch 1 evaluated (the smoke recipe evaluates every epoch) and was the best so far.
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["best.pt", "last.pt"]
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1 and [h["epoch"] for h in read_log(run)] == [1]
    assert not (run / "summary.json").exists()

    disk.resize(600)
    cli(*train_args(data["A"], run, "--resume"))
    assert_same_run(run, reference_run)
    # The failed attempt had flushed epoch 2's TensorBoard scalars before its checkpoint failed:
    # the resumed writer's purge drops them, so each epoch shows once, with log.jsonl's values.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    steps = json.loads((run / "summary.json").read_text())["steps_per_epoch"]
    top1 = [(e.step, e.value) for e in events.Scalars("val/top1")]
    assert [s for s, _ in top1] == [steps, 2 * steps]
    assert [v for _, v in top1] == pytest.approx([h["top1"] for h in read_log(run)], rel=1e-6)


@pytest.mark.timeout(180)
def test_linear_probe_changes_only_the_new_head(reference_run, data, tmp_path):
    """Linear probe from the 4-class run onto iNat-Mini-A (14 species): the head is replaced,
    only fc learns, and BatchNorm running statistics stay equal (the backbone is in eval mode).
    Two epochs of two steps with progressive resizing 32 -> 64 px also exercise the resize."""
    run = tmp_path / "linear"
    init = reference_run / "checkpoints" / "last.pt"
    train, val = data["inat"]
    cli(
        "--recipe",
        "linear_imagenet_a_15ep.yaml",
        "--train",
        train,
        "--val",
        val,
        "--init",
        init,
        "--out",
        run,
        "--set",
        "data.res=32",
        "--set",
        "data.val_res=32",
        "--set",
        "data.batch_size=16",
        "--set",
        "data.workers=2",
        "--set",
        "schedule.epochs=2",
        "--set",
        "schedule.max_steps_per_epoch=2",
        "--set",
        "precision=fp32",
        "--set",
        "progressive.enabled=true",
        "--set",
        "progressive.start_res=32",
        "--set",
        "progressive.end_res=64",
        "--set",
        "progressive.end_epoch=1",
    )
    before = torch.load(init, weights_only=True)["model"]
    after = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert after["fc.weight"].shape == (14, 2048) and after["fc.bias"].shape == (14,)
    changed = [k for k in before if not k.startswith("fc.") and not torch.equal(before[k], after[k])]
    assert changed == []  # includes every running_mean, running_var and num_batches_tracked
    summary = json.loads((run / "summary.json").read_text())
    assert summary["head_replaced"] is True and summary["num_classes"] == 14 and summary["init"] == str(init)
    assert summary["max_steps_per_epoch"] == 2 and [h["steps"] for h in read_log(run)] == [2, 2]
    assert [h["res"] for h in read_log(run)] == [32, 64]
    assert set(summary["per_supercategory"]) == {
        r["supercategory"] for r in csv.DictReader(open(run / "per_class.csv"))
    }


@pytest.mark.timeout(120)
def test_out_of_gpu_memory_in_a_step_is_one_line_with_what_to_change(data, tmp_path):
    """A real training step (real model, optimiser and ffcv loader) followed by the error CUDA
    raises when memory runs out: train_one_epoch turns it into one line naming the settings."""
    from ffcv_inat.config import load_config
    from ffcv_inat.distributed import setup
    from ffcv_inat.failures import OutOfMemory
    from ffcv_inat.training.progress import StepProgress
    from ffcv_inat.training.step import TrainStep
    from ffcv_inat.training.trainer import build_model_and_optimizer, create_loaders, read_data, train_one_epoch

    class StepThatRunsOutOfMemory(TrainStep):
        def __call__(self, images, labels, lr):
            super().__call__(images, labels, lr)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    train, val = data["A"]
    cfg = load_config("smoke_cpu.yaml", [*SETS, "data.batch_size=8"], {"data.train": str(train), "out": str(tmp_path)})
    info = setup("cpu")
    run_data = read_data(cfg, "cpu")
    t = build_model_and_optimizer(cfg, run_data.num_classes, info)
    t.step = StepThatRunsOutOfMemory(t.net, t.step.optimizer, cfg.optim, t.step.precision)
    loader, _ = create_loaders(cfg, info, run_data, 0)
    with pytest.raises(OutOfMemory) as e:
        train_one_epoch(t, loader, cfg, info, 0, len(loader), StepProgress("off", 1, 8, 0))
    assert str(e.value) == (
        "out of GPU memory at data.batch_size 8, data.res 32, precision fp32 (peak unknown): "
        "lower data.batch_size (e.g. --set data.batch_size=4) or data.res"
    )
    assert e.value.kind == "out_of_memory"
