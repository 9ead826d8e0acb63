"""Write files so that nothing half-written is ever left at the final path.

Outputs go to hidden temporary files in the target folder (same filesystem, so the final
rename is atomic) and are renamed only when the whole job succeeded. Ctrl-C, SIGTERM or an
exception removes the temporaries; a kill -9 can leave one, but never a file at the final
path, and the next run for the same output removes temporaries whose writer is dead.

A full disk (or quota) while writing is one line, `DiskFull`, naming the final path, the room
the file needed and the room left on its filesystem; the temporaries are removed first, so
the previous version of the file (last checkpoint, beton, summary) stays as it was.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Iterator

from . import UserError


def temp_path_for(final: Path, pid: int | None = None) -> Path:
    """Where process `pid` (default: this one) writes `final` before renaming it into place."""
    final = Path(final)
    return final.with_name(f".{final.name}.{os.getpid() if pid is None else pid}.tmp")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    if pid <= 0:  # os.kill(0, ...) would signal our own process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(final: Path) -> None:
    """Remove temporaries of earlier writers of `final` that were killed (-9) mid-write."""
    final = Path(final)
    for tmp in final.parent.glob(f".{final.name}.*.tmp"):
        pid = tmp.name[len(final.name) + 2 : -len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Small files (state, summaries) that readers may poll: never seen half-written."""
    path = Path(path)
    tmp = temp_path_for(path)
    data = text.encode()
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        if not is_disk_full(e):
            raise
        tmp.unlink(missing_ok=True)
        raise DiskFull(path, len(data)) from None
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ a full disk

# What torch.save's zip writer raises when a write comes up short: it does not keep the errno.
_TORCH_SHORT_WRITE = ("unexpected pos", "file write failed")


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the filesystem (or the user's quota) has no room left."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, RuntimeError):
        text = str(exc)
        return "inline_container" in text and any(s in text for s in _TORCH_SHORT_WRITE)
    return False


def mount_of(path: Path) -> Path:
    """The mount point of the filesystem `path` (or its nearest existing parent) is on."""
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def free_bytes(path: str | Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem of `path`."""
    path = Path(path)
    st = os.statvfs(path if path.exists() else mount_of(path))
    return st.f_bavail * st.f_frsize


def format_size(num_bytes: float) -> str:
    """77 GB, 1.2 GB, 190 MB, 4.2 MB, 12 kB: two significant figures or whole units."""
    mb = num_bytes / 1e6
    if mb >= 1000:
        return f"{mb / 1000:.0f} GB" if mb >= 10_000 else f"{mb / 1000:.1f} GB"
    if mb >= 10:
        return f"{mb:.0f} MB"
    if mb >= 0.1:
        return f"{mb:.1f} MB"
    return f"{max(1, round(num_bytes / 1e3))} kB"


class DiskFull(UserError):
    """No room to write `path`: one line with the room needed and the room left.

    `needed` None: only `at_least` (what had been written when the disk filled up) is known.
    `estimate` (a pre-flight refusal, before anything was written): what `needed` was
    estimated from, and `override` how to start anyway.
    """

    kind = "disk_full"

    def __init__(self, path: str | Path, needed: int | None, at_least: int = 0, estimate: str = "", override: str = ""):
        path = Path(path)
        folder = path.parent if path.parent.exists() else mount_of(path)
        self.path, self.needed, self.free = path, needed, free_bytes(folder)
        if needed is not None and needed > 0:
            needs = f"needs ≈ {format_size(needed)}"
        else:
            needs = f"needs more than {format_size(at_least)}"
        where = f"{format_size(self.free)} free on {mount_of(folder)}"
        if estimate:
            super().__init__(f"{path}: not enough room ({needs}: {estimate}; {where}); {override}")
        else:
            super().__init__(f"{path}: disk full ({needs}, {where})")


def require_room(path: str | Path, needed: int, estimate: str, override: str) -> None:
    """Refuse to start a long write of `needed` bytes to `path` (a file, or a folder to write
    in) where its filesystem has less free: `DiskFull` saying what the estimate came from and
    how to skip the check."""
    path = Path(path)
    if free_bytes(path if path.is_dir() else path.parent) < needed:
        raise DiskFull(path, needed, estimate=estimate, override=override)


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that cleanup code runs."""


@contextlib.contextmanager
def abandon_queues_on_failure() -> Iterator[None]:
    """Around code that makes multiprocessing queues (ffcv's DatasetWriter): if it fails or is
    interrupted, the queues it made are abandoned, so that the process can still exit.

    A Ctrl-C or SIGTERM that lands in `Queue.put` just after it took the queue's lock leaves the
    lock taken for good, and a queue whose readers were stopped keeps data its feeder thread can
    never write: either way the exit-time finalizers (close, then join the feeder) block forever
    (seen: a write-beton interrupted at its start, hung at exit in Queue._finalize_close). The
    data of an abandoned write is of no use, so those finalizers are cancelled; queues made
    before the block are left as they are. (multiprocessing.util keeps its finalizers in a
    private registry, the same since Python 3.4.)"""
    from multiprocessing import queues, util

    before = set(util._finalizer_registry)
    try:
        yield
    except BaseException:
        ours = (queues.Queue._finalize_close, queues.Queue._finalize_join)
        for key, finalizer in list(util._finalizer_registry.items()):
            if key not in before and getattr(finalizer, "_callback", None) in ours:
                finalizer.cancel()
        raise


@contextlib.contextmanager
def interrupts_as_exceptions() -> Iterator[list[int]]:
    """Raise on SIGINT (KeyboardInterrupt) and SIGTERM (Terminated), and remember them.

    An exception raised by a signal handler can be swallowed when it lands inside a
    destructor or a library's cleanup ("Exception ignored in ..."); the list of received
    signals lets the caller refuse to commit anyway.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        received.append(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(f"terminated by signal {signum}")

    watched = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        watched.append(signal.SIGINT)
    previous = {s: signal.signal(s, handler) for s in watched}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def atomic_outputs(*finals: str | Path, expected_bytes: int | None = None) -> Iterator[list[Path]]:
    """Yield temporary paths for `finals`; rename them all into place on success.

    On any failure (exception, Ctrl-C, SIGTERM) the temporaries are deleted, worker
    processes started inside the block are stopped, and the exception propagates; a full
    disk becomes `DiskFull` naming the last of `finals` (the main output) and
    `expected_bytes`, the caller's estimate of what all of them take.
    Renames happen in the given order: put the file readers look for first *last*.
    """
    finals = [Path(f) for f in finals]
    for f in finals:
        remove_stale_temps(f)
    temps = [temp_path_for(f) for f in finals]
    try:
        with interrupts_as_exceptions() as received:
            yield temps
            if received:
                raise KeyboardInterrupt if received[0] == signal.SIGINT else Terminated("terminated")
            for tmp, final in zip(temps, finals):
                os.replace(tmp, final)
    except BaseException as e:
        for p in multiprocessing.active_children():
            p.terminate()
        started = [tmp for tmp in temps if tmp.exists()]
        written = sum(tmp.stat().st_size for tmp in started if tmp.exists())
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        if started:  # the writing had begun: its workers may still be starting
            _unlink_reappearing(temps)
        if is_disk_full(e):
            raise DiskFull(finals[-1], expected_bytes, at_least=written) from None
        raise


def _unlink_reappearing(temps: list[Path], seconds: float = 2.0) -> None:
    """Remove temporaries that reappear shortly after the cleanup: a worker that a signal caught
    while it was being started is not among active_children, so it is not stopped, and ffcv's
    writer workers open the output in append mode, which creates it again."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
        for tmp in temps:
            tmp.unlink(missing_ok=True)
