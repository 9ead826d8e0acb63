"""Write files so that nothing half-written is ever left at the final path.

Outputs go to hidden temporary files in the target folder (same filesystem, so the final
rename is atomic) and are renamed only when the whole job succeeded. Ctrl-C, SIGTERM or an
exception removes the temporaries; a kill -9 can leave one, but never a file at the final
path, and the next run for the same output removes temporaries whose writer is dead.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Iterator


def temp_path_for(final: Path) -> Path:
    final = Path(final)
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


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
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that cleanup code runs."""


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
def atomic_outputs(*finals: str | Path) -> Iterator[list[Path]]:
    """Yield temporary paths for `finals`; rename them all into place on success.

    On any failure (exception, Ctrl-C, SIGTERM) the temporaries are deleted, worker
    processes started inside the block are stopped, and the exception propagates.
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
    except BaseException:
        for p in multiprocessing.active_children():
            p.terminate()
        started = [tmp for tmp in temps if tmp.exists()]
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        if started:  # the writing had begun: its workers may still be starting
            _unlink_reappearing(temps)
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
