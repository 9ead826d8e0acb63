"""What a run shows and leaves to take away: the progress bar on a terminal, TensorBoard, best.pt
and kept epochs, `ffcv-train export`; and the Python API that made the run (`ffcv_inat.train` /
`ffcv_inat.evaluate`). One tiny run (module fixture), on a pseudo-terminal, serves them all
(the progress lines of a run without one: test_train_run.py)."""

import contextlib
import csv
import json
import os
import signal

import pytest
import torch
import torchvision
from click.testing import CliRunner

import ffcv_inat
from helpers.terminal import terminal
from helpers.train_data import imagenet_a_betons
from ffcv_inat import UserError
from ffcv_inat.beton import check_beton
from ffcv_inat.checkpoint import save_checkpoint
from ffcv_inat.model import build_model
from ffcv_inat.training.cli import main

# Two epochs, each evaluated and kept; the loss read back at every step.
OVERRIDES = {
    "schedule.epochs": 2,
    "schedule.step_every": 1,
    "eval.every": 1,
    "checkpoint.keep_every": 1,
    "log_every": 1,
}


@pytest.fixture(scope="module")
def betons(tmp_path_factory):
    return imagenet_a_betons(tmp_path_factory.mktemp("outputs_data"), k=4, train_per_class=16, val_per_class=4)


@pytest.fixture(scope="module")
def run(betons, tmp_path_factory):
    """(run dir, summary, what the run showed on its terminal), trained through the Python API."""
    out = tmp_path_factory.mktemp("outputs_run") / "run"
    with terminal() as (stream, shown), contextlib.redirect_stderr(stream):
        summary = ffcv_inat.train("smoke_cpu.yaml", train=betons[0], val=betons[1], out=out, overrides=OVERRIDES)
    return out, summary, b"".join(shown).decode()


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.mark.timeout(240)
def test_api_trains_and_evaluates_like_the_commands(run, betons):
    run_dir, summary, _ = run
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert summary["epochs"] == 2 and summary["num_classes"] == 4
    result = ffcv_inat.evaluate(run_dir / "checkpoints" / "last.pt", betons[1], batch_size=8)
    assert result["top1"] == summary["top1"] and result["eval_images"] == 16


@pytest.mark.timeout(60)
def test_api_bad_key_or_input_is_a_user_error(betons, tmp_path):
    with pytest.raises(UserError, match=r"overrides\['optim.lrr'\]: unknown key optim.lrr"):
        ffcv_inat.train("smoke_cpu.yaml", train=betons[0], out=tmp_path / "r", overrides={"optim.lrr": 0.1})
    with pytest.raises(UserError, match="optim.lr must be float"):
        ffcv_inat.train("smoke_cpu.yaml", train=betons[0], out=tmp_path / "r", overrides={"optim.lr": "fast"})
    with pytest.raises(UserError, match="data.train: file not found"):
        ffcv_inat.train("smoke_cpu.yaml", train=tmp_path / "none.beton", out=tmp_path / "r")
    with pytest.raises(UserError, match="checkpoint not found"):
        ffcv_inat.evaluate(tmp_path / "none.pt", betons[1])
    assert not (tmp_path / "r").exists()


@pytest.mark.timeout(60)
def test_on_a_terminal_each_epoch_has_a_per_step_bar(run):
    _, summary, shown = run
    steps = summary["steps_per_epoch"]
    frames = shown.split("\r")  # the bar redraws itself in place
    for epoch in (1, 2):
        drawn = [f for f in frames if f.startswith(f"epoch {epoch}/2:")]
        assert any(f"| {steps}/{steps} [" in f for f in drawn), drawn  # tqdm's count, elapsed<remaining
        assert any(" img/s, loss " in f and ", lr 0.0" in f and "ETA run " in f for f in drawn), drawn
    assert [ln.split(" done:")[0] for ln in shown.replace("\r", "\n").splitlines() if " done: " in ln] == [
        "epoch 1/2",
        "epoch 2/2",
    ]


@pytest.mark.timeout(60)
def test_tensorboard_holds_the_log_values(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, summary, _ = run
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/images_per_second"} <= tags
    assert {"val/top1", "val/top5", "val/loss", "val/acc_animal", "epoch/seconds", "epoch/train_loss"} <= tags
    log, steps = read_log(run_dir), summary["steps_per_epoch"]
    for tag, key in (
        ("val/top1", "top1"),
        ("val/top5", "top5"),
        ("val/loss", "val_loss"),
        ("epoch/seconds", "epoch_seconds"),
    ):
        got = [(e.step, e.value) for e in events.Scalars(tag)]
        assert [s for s, _ in got] == [steps, 2 * steps], tag  # each epoch once, at its last step
        assert [v for _, v in got] == pytest.approx([h[key] for h in log], rel=1e-6), tag  # float32 in the file
    acc = [e.value for e in events.Scalars("val/acc_animal")]
    assert acc == pytest.approx([h["per_supercategory"]["animal"] for h in log], rel=1e-6)
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 2 * steps + 1))  # log_every 1
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([0.02] * steps + [0.002] * steps)


@pytest.mark.timeout(60)
def test_best_and_kept_checkpoints(run):
    run_dir, summary, _ = run
    log = read_log(run_dir)
    ckpts = run_dir / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.pt", "epoch_001.pt", "epoch_002.pt", "last.pt"]
    best_epoch = max(log, key=lambda h: h["top1"])["epoch"]  # the first of equals
    best = torch.load(ckpts / "best.pt", weights_only=True)
    assert best["epoch"] == best_epoch and summary["best_checkpoint"] == str(ckpts / "best.pt")
    for n in (1, 2):
        assert torch.load(ckpts / f"epoch_00{n}.pt", weights_only=True)["epoch"] == n
    last = torch.load(ckpts / "last.pt", weights_only=True)
    kept = torch.load(ckpts / "epoch_002.pt", weights_only=True)
    assert all(torch.equal(v, kept["model"][k]) for k, v in last["model"].items())


def _kill_at_rename(n, write):
    """Run `write` in a forked child that SIGKILLs itself just before its n-th os.replace."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            real, calls = os.replace, [0]

            def replace(src, dst):
                calls[0] += 1
                if calls[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
                real(src, dst)

            os.replace = replace
            write()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status)


@pytest.mark.timeout(60)
def test_a_kill_during_any_checkpoint_write_loses_nothing(tmp_path):
    """last.pt, best.pt and a kept epoch written together, killed before each of their renames
    (and not at all): every file is whole, old or new, and last.pt (what --resume reads) is never
    newer than the files that go with it, so a resumed run redoes the epoch and writes them all."""
    ckpts = tmp_path / "checkpoints"
    last, best, kept = ckpts / "last.pt", ckpts / "best.pt", ckpts / "epoch_002.pt"
    for n in (1, 2, 3, 4):
        for p in ckpts.glob("*"):
            p.unlink()
        save_checkpoint(last, {"epoch": 1, "w": torch.zeros(3)}, also=(best,))
        killed = _kill_at_rename(n, lambda: save_checkpoint(last, {"epoch": 2, "w": torch.ones(3)}, also=(best, kept)))
        assert killed == (n <= 3)  # three renames: best.pt, epoch_002.pt, then last.pt
        epochs = {p.name: torch.load(p, weights_only=True)["epoch"] for p in ckpts.glob("*.pt")}
        if epochs["last.pt"] == 2:
            assert epochs == {"last.pt": 2, "best.pt": 2, "epoch_002.pt": 2} and not killed
            assert not list(ckpts.glob(".*"))  # no temporary left
        else:
            assert epochs["last.pt"] == 1 and epochs["best.pt"] in (1, 2), epochs


@pytest.mark.timeout(120)
def test_export_gives_torchvision_the_trainers_logits(run, betons, tmp_path):
    run_dir, summary, _ = run
    result = CliRunner().invoke(main, ["export", str(run_dir), "--out", str(tmp_path / "model.pt")])
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'model.pt'} (4 classes" in result.output
    net = torchvision.models.resnet50(num_classes=4)
    net.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    trained = build_model(4)
    trained.load_state_dict(torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"])
    batch = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net.eval()(batch), trained.eval()(batch))
    with open(tmp_path / "model.classes.csv") as f:
        rows = list(csv.DictReader(f))
    classes = check_beton(betons[0]).classes
    assert [(r["label"], r["id"], r["name"]) for r in rows] == [(str(c.label), c.id, c.name) for c in classes]
    again = CliRunner().invoke(main, ["export", str(run_dir), "--out", str(tmp_path / "model.pt")])
    assert again.exit_code == 1 and "exists: choose another --out" in again.output
    best = CliRunner().invoke(main, ["export", str(run_dir), "--best", "--out", str(tmp_path / "best.pt")])
    assert best.exit_code == 0 and "from " + str(run_dir / "checkpoints" / "best.pt") in best.output


@pytest.mark.parametrize(
    "epochs, start, every, keep, evaluates, files",
    [
        (2, 0, 1, 0, True, 2),  # epoch 1's last.pt and epoch 2's beside it; best.pt links one of them
        (2, 1, 1, 0, True, 1),  # resumed before the last epoch: only the new last.pt
        (3, 0, 1, 0, True, 3),  # epoch 1 may stay as best.pt while 2 and 3 are written
        (3, 0, 0, 0, True, 2),  # evaluated only after the last epoch: best.pt is the last file
        (3, 0, 1, 0, False, 2),  # no val beton: no best.pt
        (90, 0, 0, 30, True, 2 + 2),  # epoch_030 and epoch_060 outlive last.pt; epoch_090 is it
        (90, 60, 0, 30, True, 2),
        (90, 90, 0, 30, True, 0),  # complete
    ],
)
def test_room_for_checkpoints_counts_what_outlives_last(epochs, start, every, keep, evaluates, files):
    from ffcv_inat.config import load_config
    from ffcv_inat.training.trainer import checkpoint_files

    cfg = load_config(
        "smoke_cpu.yaml", typed={"schedule.epochs": epochs, "eval.every": every, "checkpoint.keep_every": keep}
    )
    assert checkpoint_files(cfg, start, evaluates=evaluates) == files


@pytest.mark.timeout(60)
def test_export_of_a_plain_state_dict_needs_the_classes(betons, tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save(torchvision.models.resnet50(num_classes=4).state_dict(), plain)
    r = CliRunner().invoke(main, ["export", str(plain), "--out", str(tmp_path / "m.pt")])
    assert r.exit_code == 1 and r.output == (
        f"Error: {plain}: holds no class list and names no train beton: pass --beton B (its classes)\n"
    )
    r = CliRunner().invoke(main, ["export", str(plain), "--out", str(tmp_path / "m.pt"), "--beton", str(betons[0])])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m.classes.csv").read_text().count("\n") == 5  # header + 4 classes
    r = CliRunner().invoke(main, ["export", str(tmp_path), "--out", str(tmp_path / "n.pt")])
    assert r.exit_code == 1 and r.output == f"Error: {tmp_path}: no checkpoints/last.pt\n"
    for args, said in (
        ([str(tmp_path / "none.pt")], f"checkpoint not found: {tmp_path / 'none.pt'}"),
        ([str(plain), "--beton", str(tmp_path / "none.beton")], f"--beton {tmp_path / 'none.beton'}: file not found"),
    ):
        r = CliRunner().invoke(main, ["export", *args, "--out", str(tmp_path / "o.pt")])
        assert r.exit_code == 1 and r.output == f"Error: {said}\n", r.output
