"""A full disk as one line (atomic.DiskFull), and the error kinds a command records for a sweep."""

from __future__ import annotations

import errno
import json

import click
import pytest
import torch
from click.testing import CliRunner

from ffcv_inat import UserError
from ffcv_inat.atomic import DiskFull, atomic_outputs, format_size, is_disk_full, write_text_atomic
from ffcv_inat.checkpoint import save_checkpoint, tensor_bytes
from ffcv_inat.command_line import report_user_errors
from ffcv_inat.failures import ERROR_RECORD_ENV, KINDS, Diverged, MachineLacks, is_permanent, read_failure


@pytest.mark.parametrize(
    "num_bytes,text",
    [
        (76_979_000_000, "77 GB"),
        (1_234_000_000, "1.2 GB"),
        (190_400_000, "190 MB"),
        (61_000_000, "61 MB"),
        (4_230_000, "4.2 MB"),
        (120_000, "0.1 MB"),
        (12_345, "12 kB"),
        (3, "1 kB"),
    ],
)
def test_sizes_read_as_people_write_them(num_bytes, text):
    assert format_size(num_bytes) == text


def test_what_counts_as_a_full_disk():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(RuntimeError("CUDA error: an illegal memory access"))


@pytest.mark.timeout(60)
def test_checkpoint_on_a_full_disk_is_one_line_and_keeps_the_last_one(small_disk):
    """torch.save's zip writer on a 1 MB filesystem raises its own RuntimeError (no errno);
    it is the same one line, and the last good checkpoint stays."""
    disk = small_disk(1)
    ckpt = disk.path / "checkpoints" / "last.pt"
    save_checkpoint(ckpt, {"model": {"w": torch.zeros(50_000)}, "epoch": 1})  # 200 kB
    before = ckpt.read_bytes()
    state = {"model": {"w": torch.ones(300_000)}, "epoch": 2}  # 1.2 MB
    with pytest.raises(DiskFull) as e:
        save_checkpoint(ckpt, state)
    assert str(e.value).startswith(f"{ckpt}: disk full (needs ≈ 1.2 MB, ")
    assert str(e.value).endswith(f" free on {disk.path})")
    assert e.value.needed == tensor_bytes(state) == 1_200_000
    assert [p.name for p in ckpt.parent.iterdir()] == ["last.pt"] and ckpt.read_bytes() == before


@pytest.mark.timeout(60)
def test_small_files_on_a_full_disk(small_disk):
    """write_text_atomic (sweep state, manifests) and atomic_outputs without an estimate
    (logs, summaries, figures): one line each, the old file kept, no temporary left."""
    disk = small_disk(1)
    state = disk.path / "sweep_state.json"
    write_text_atomic(state, '{"status": "running"}')
    (disk.path / "filler").write_bytes(b"\0" * (disk.free_bytes() - 4096))
    with pytest.raises(DiskFull) as e:
        write_text_atomic(state, "x" * 100_000)
    assert str(e.value).startswith(f"{state}: disk full (needs ≈ 0.1 MB, ")
    with pytest.raises(DiskFull) as e:
        with atomic_outputs(disk.path / "summary.json") as (tmp,):
            tmp.write_text("y" * 100_000)
    assert str(e.value).startswith(f"{disk.path / 'summary.json'}: disk full (needs more than ")
    assert sorted(p.name for p in disk.path.iterdir()) == ["filler", "sweep_state.json"]
    assert state.read_text() == '{"status": "running"}'


def test_permanent_kinds_are_the_causes_a_retry_cannot_change():
    assert {k for k in KINDS if is_permanent(k)} == {"input", "diverged", "disk_full", "out_of_memory"}
    assert not is_permanent("machine") and not is_permanent("terminated") and not is_permanent(None)
    assert UserError("x").kind == "input" and Diverged("x").kind == "diverged"
    assert DiskFull.kind == "disk_full" and MachineLacks("x").kind == "machine"


@pytest.mark.parametrize(
    "error,kind,permanent",
    [
        (UserError("data.train: file not found: a.beton"), "input", True),
        (MachineLacks("device cuda: no CUDA GPU is visible on this machine"), "machine", False),
    ],
)
def test_a_command_records_its_error_kind_where_the_sweep_asks(tmp_path, monkeypatch, error, kind, permanent):
    @click.command()
    @report_user_errors
    def command():
        raise error

    record = tmp_path / "error.json"
    monkeypatch.setenv(ERROR_RECORD_ENV, str(record))
    result = CliRunner().invoke(command, [])
    assert result.exit_code == 1 and result.output == f"Error: {error}\n"
    assert json.loads(record.read_text()) == {"kind": kind, "permanent": permanent, "error": str(error)}
    assert read_failure(record)["kind"] == kind
    monkeypatch.delenv(ERROR_RECORD_ENV)
    record.unlink()
    assert CliRunner().invoke(command, []).exit_code == 1 and not record.exists()  # no sweep: no record


def test_a_later_termination_does_not_replace_the_cause(tmp_path, monkeypatch):
    """torchrun stops the other ranks (SIGTERM) when one fails: the first, permanent cause stays."""
    from ffcv_inat.atomic import Terminated
    from ffcv_inat.failures import record_failure

    record = tmp_path / "error.json"
    monkeypatch.setenv(ERROR_RECORD_ENV, str(record))
    record_failure(Diverged("train loss is nan in epoch 3: the run diverged (lower optim.lr)"))
    record_failure(Terminated("terminated by signal 15"))
    assert read_failure(record)["kind"] == "diverged"
    record.unlink()
    record_failure(Terminated("terminated by signal 15"))
    assert read_failure(record) == {"kind": "terminated", "permanent": False, "error": "terminated by signal 15"}


@pytest.mark.parametrize(
    "batch,res,world,peak,total,line",
    [
        (
            ("data.batch_size", 256),
            ("data.res", 224),
            1,
            79_811.4,
            81_559.0,
            "out of GPU memory at data.batch_size 256, data.res 224, precision bf16 (peak 79,811 MB of 81,559 MB): "
            "lower data.batch_size (e.g. --set data.batch_size=128) or data.res",
        ),
        (
            ("eval.batch_size", 1024),
            ("data.val_res", 256),
            8,
            None,
            None,
            "out of GPU memory at eval.batch_size 1024 (128 per GPU), data.val_res 256, precision bf16 (peak unknown): "
            "lower eval.batch_size (e.g. --set eval.batch_size=512) or data.val_res",
        ),
    ],
)
def test_out_of_memory_line_names_the_settings_and_what_to_change(batch, res, world, peak, total, line):
    from ffcv_inat.failures import out_of_memory_line

    assert out_of_memory_line(batch, res, world, "bf16", peak, total) == line
