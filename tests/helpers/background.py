"""Commands run in the background while other tests run, for a fixture that a few tests wait
for at the end of a session (the smoke grid: ~12 processes of ffcv start-up, mostly one core
each; the torchrun run).

Detached from pytest (its own session, re-parented by `setsid --fork`): a living descendant of
the test process would count in the CPU time that ffcv-bench measures of "this process and its
children". At the lowest priority (nice 19, for its autogroup too), so the tests in the
foreground keep the cores they ask for and only idle time goes to it. Stopped by its process group's id, never by name.

Run as a script, this file is the wrapper: it runs the commands one after the other (stopping
at the first that fails) and records the exit status.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path


def _write_whole(path: Path, text: str) -> None:
    """Written aside, then renamed: a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class BackgroundRun:
    """`commands` started now, one after the other; `output` holds their stdout (and stderr
    unless `separate_stderr`, then in `errors`); `wait()` gives the exit status of the last."""

    def __init__(
        self, commands: list[list[str]], folder: Path, env: dict[str, str] | None = None, separate_stderr: bool = False
    ):
        self.commands = commands
        self.pid_file, self.rc_file = folder / "pid", folder / "returncode"
        self.output, self.errors = folder / "stdout.txt", folder / "stderr.txt" if separate_stderr else None
        subprocess.run(
            [
                "setsid",
                "--fork",
                sys.executable,
                __file__,
                str(self.pid_file),
                str(self.output),
                str(self.errors or ""),
                str(self.rc_file),
                json.dumps(commands),
            ],
            env=env,
            check=True,
        )
        self.pgid = int(self._poll(self.pid_file.read_text, 30, "its pid"))

    @staticmethod
    def _poll(read, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return read()
            except FileNotFoundError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"background run: no {what} after {timeout:.0f} s") from None
                time.sleep(0.2)

    def wait(self, timeout: float = 900) -> int:
        """The exit status, once the run has ended (a test's own timeout is the real limit).
        A test now waits for it: back to normal priority, where allowed (root; CI runs as root),
        so that other users of the machine do not starve it."""
        if not self.rc_file.exists():
            self._renice(0)
        return int(self._poll(self.rc_file.read_text, timeout, "exit status"))

    def result(self, timeout: float = 900) -> subprocess.CompletedProcess:
        """Once the run has ended: its exit status, stdout and stderr (None unless separate)."""
        returncode = self.wait(timeout)
        return subprocess.CompletedProcess(
            self.commands, returncode, self.output.read_text(), self.errors.read_text() if self.errors else None
        )

    def _members(self) -> list[int]:
        """The run's processes that still run. Read from /proc rather than asked with kill(0):
        an init that does not reap leaves the ended ones as zombies."""
        pids = []
        for entry in os.listdir("/proc"):
            try:
                stat = Path(f"/proc/{entry}/stat").read_text() if entry.isdigit() else ""
            except OSError:  # ended meanwhile
                continue
            fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
            if fields and fields[0] != "Z" and int(fields[2]) == self.pgid:
                pids.append(int(entry))
        return pids

    def _alive(self) -> bool:
        return bool(self._members())

    def _renice(self, nice: int) -> None:
        """Every running process of the run (the commands it starts later inherit it) and the
        session's autogroup; a process that ended meanwhile, or no right to do it, is no error."""
        for pid in self._members():
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, pid, nice)
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/autogroup").write_text(str(nice))

    def stop(self, grace: float = 30) -> None:
        """SIGTERM to every process of the run, SIGKILL to those left after `grace` seconds."""
        if self.rc_file.exists():  # ended by itself, its children waited for
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not self._alive():
                return
            os.killpg(self.pgid, sig)
            deadline = time.monotonic() + grace
            while self._alive() and time.monotonic() < deadline:
                time.sleep(0.2)


def _run_commands(pid_file: str, stdout: str, stderr: str, rc_file: str, commands: str) -> None:
    _write_whole(Path(pid_file), str(os.getpid()))  # setsid made it the process group's leader
    os.nice(19)  # inherited by every command
    # With autogroup scheduling the new session is a group of its own that gets an equal share
    # beside pytest's whatever its processes' nice: lower the group's weight too.
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text("19")
    returncode = 0
    with open(stdout, "w") as out, open(stderr, "w") if stderr else nullcontext(subprocess.STDOUT) as err:
        for cmd in json.loads(commands):
            returncode = subprocess.run(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL).returncode
            if returncode != 0:
                break
    _write_whole(Path(rc_file), str(returncode))


if __name__ == "__main__":
    _run_commands(*sys.argv[1:])
