"""A pseudo-terminal for tests of what a run shows on a terminal (tqdm's bar)."""

import contextlib
import fcntl
import os
import pty
import struct
import termios
import threading


@contextlib.contextmanager
def terminal(columns: int = 160):
    """Yields (a text stream on a `columns`-wide pseudo-terminal, the list its output is read
    into). The output is drained as it comes (a pty's buffer is small: a writer would block)
    and complete once the block ends."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    shown: list[bytes] = []

    def drain():
        with contextlib.suppress(OSError):  # EIO once the slave side is closed
            while chunk := os.read(master, 65536):
                shown.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stream = os.fdopen(slave, "w")
    try:
        yield stream, shown
    finally:
        stream.close()
        reader.join(10)
        os.close(master)
