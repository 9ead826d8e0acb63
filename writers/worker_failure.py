"""An ffcv writer worker that dies must not leave `write-beton` waiting forever.

ffcv's DatasetWriter waits until its workers have counted every sample; a worker killed by an
exception in ffcv's own code (a full disk fails its page write) never does, and the wait
never ends. So each worker's stderr becomes a file (`report_to`, on its first sample) that,
when the worker flushes a traceback as it dies, signals the main process (SIGUSR1); there
`worker_failures_raise` turns the signal into WorkerFailed, and the write fails and cleans up.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator


class WorkerFailed(Exception):
    """A writer worker died; the message is the last line of its traceback, if it got that far."""


class _ReportingStderr(io.TextIOBase):
    def __init__(self, path: Path, parent: int):
        self.path, self.parent = path, parent
        self.traceback = self.signalled = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with open(self.path, "a") as f:
            f.write(text)
        # Python's tracebacks start so; a worker's warnings alone do not mean it died.
        self.traceback = self.traceback or "Traceback (most recent call last)" in text
        return len(text)

    def flush(self) -> None:
        if self.traceback and not self.signalled:
            self.signalled = True
            os.kill(self.parent, signal.SIGUSR1)


def report_to(parent: int, folder: str | Path) -> None:
    """In a writer worker (not `parent` itself): send its stderr to FOLDER/worker-PID.err and
    signal `parent` when it dies with a traceback. Called by the dataset on each sample."""
    if os.getpid() != parent and not isinstance(sys.stderr, _ReportingStderr):
        sys.stderr = _ReportingStderr(Path(folder) / f"worker-{os.getpid()}.err", parent)


def _last_line(folder: Path) -> str:
    lines = [ln.strip() for f in sorted(folder.glob("worker-*.err")) for ln in f.read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    return lines[-1][:300] if lines else "it left no message"


@contextlib.contextmanager
def worker_failures_raise(folder: str | Path) -> Iterator[None]:
    """Raise WorkerFailed in this (main) thread when a worker reporting to `folder` dies."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        # Already failing (SIGTERM or Ctrl-C became an exception, and ffcv's pool is stopping its
        # workers, which inherited that handler and die with a traceback): the first cause wins.
        # Raising here would cut the pool's clean-up short and leave the process hanging at exit.
        if sys.exc_info()[1] is not None:
            return
        raise WorkerFailed(_last_line(Path(folder)))

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)
