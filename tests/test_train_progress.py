"""The trainer's progress inside an epoch (ffcv_inat/training/progress.py): its pure figures, the
line mode's interval, and the bar on a pty (whole runs: test_train_run.py without a terminal,
test_train_outputs.py on one)."""

import io

from helpers.terminal import terminal
from ffcv_inat.training.progress import StepFigures, StepProgress, eta_seconds, format_duration, progress_line


def test_eta_and_durations():
    assert eta_seconds(0, 100, 5.0) is None and eta_seconds(10, 100, 0.0) is None
    assert eta_seconds(25, 100, 10.0) == 30.0 and eta_seconds(100, 100, 40.0) == 0.0
    assert [format_duration(s) for s in (None, 0, 59.6, 61, 3600, 3725, 90061)] == [
        "?",
        "0:00",
        "1:00",
        "1:01",
        "1:00:00",
        "1:02:05",
        "1d 1:01:01",
    ]


def test_progress_line():
    f = StepFigures(2, 90, 1250, 5004, 2412.4, 3.21456, 0.1, 1500.0, 123456.0)
    assert progress_line(f) == (
        "epoch 3/90 step 1250/5004 (25%)  2,412 img/s  loss 3.2146  lr 0.1  ETA epoch 25:00, run 1d 10:17:36"
    )
    unknown = StepFigures(0, 1, 0, 10, None, None, 0.02, None, None)
    assert progress_line(unknown) == "epoch 1/1 step 0/10 (0%)  ? img/s  loss ?  lr 0.02  ETA epoch ?, run ?"


def test_line_mode_reports_at_its_interval_and_at_the_epochs_end():
    out = io.StringIO()
    p = StepProgress("auto", epochs=2, images_per_step=16, every_seconds=3600, stream=out)
    assert p.mode == "lines"  # not a terminal
    p.start_epoch(0, 5)
    for step in range(1, 6):
        p.step(step, 0.1, loss=1.0 / step if step % 2 == 0 else None)
    p.end_epoch("epoch 1/2 done")
    lines = out.getvalue().splitlines()
    # The hour-long interval has not passed: only the epoch's last step is said, with the last loss read.
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2 step 5/5 (100%)") and "loss 0.2500" in lines[0]
    assert lines[1] == "epoch 1/2 done"


def test_bar_on_a_terminal():
    with terminal() as (stream, shown):
        p = StepProgress("auto", epochs=3, images_per_step=32, every_seconds=0, stream=stream)
        assert p.mode == "bar"
        p.start_epoch(1, 4)
        for step in range(1, 5):
            p.step(step, 0.05, loss=0.5)
        p.end_epoch("epoch 2/3 done")
    frames = b"".join(shown).decode().split("\r")  # the bar, redrawn in place
    assert any(f.startswith("epoch 2/3:") and "| 4/4 [" in f for f in frames), frames
    assert any("img/s, loss 0.5000, lr 0.05, ETA run" in f for f in frames)
    assert "epoch 2/3 done\r\n" in b"".join(shown).decode()  # the epoch's line, after the bar (the pty adds \r)


def test_without_the_tensorboard_package_a_run_warns_once_and_goes_on(tmp_path, monkeypatch, capsys):
    import sys

    from ffcv_inat.training.tensorboard_log import open_board

    for name in [
        m for m in sys.modules if m == "tensorboard" or m.startswith(("tensorboard.", "torch.utils.tensorboard"))
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # what a missing package looks like to import
    assert open_board(tmp_path) is None
    err = capsys.readouterr().err
    assert err.startswith("warning: logging.tensorboard is on but TensorBoard cannot be imported (")
    assert err.endswith("no event files for this run (pip install tensorboard, or --set logging.tensorboard=false)\n")
    assert err.count("\n") == 1 and not (tmp_path / "tensorboard").exists()
