"""tests/helpers/background.py, which the smoke grid and torchrun fixtures rely on: commands in order,
the first failure ends the run, detached from pytest, stopped by its process group."""

import os
import time

import pytest

from helpers.background import BackgroundRun


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after "pid (comm) ": state, ppid, pgrp, ... (nice is index 16)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return stat[stat.rfind(")") + 2 :].split()


def niceness_in_group(pgid: int) -> list[int]:
    """The nice value of each process of the group."""
    out = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = stat_fields(int(entry))
        except OSError:
            continue
        if int(fields[2]) == pgid:
            out.append(int(fields[16]))
    return out


@pytest.mark.timeout(60)
def test_runs_commands_in_order_until_one_fails(tmp_path):
    run = BackgroundRun(
        [["sh", "-c", "echo first; echo to-stderr >&2"], ["sh", "-c", "echo second; exit 3"], ["echo", "never"]],
        tmp_path,
    )
    assert run.wait(timeout=30) == 3
    assert run.output.read_text() == "first\nto-stderr\nsecond\n"  # stderr with stdout unless kept apart


@pytest.mark.timeout(60)
def test_detached_low_priority_and_stopped_by_its_group(tmp_path):
    run = BackgroundRun([["sleep", "60"]], tmp_path)
    assert int(stat_fields(run.pgid)[1]) != os.getpid()  # not a descendant: ffcv-bench's CPU time leaves it out
    deadline = time.monotonic() + 20
    while len(niceness_in_group(run.pgid)) < 2 and time.monotonic() < deadline:  # the wrapper, then sleep
        time.sleep(0.1)
    assert niceness_in_group(run.pgid) == [19, 19] and run._alive()
    if os.path.exists("/proc/self/autogroup"):  # the session's scheduling group is niced too
        assert open(f"/proc/{run.pgid}/autogroup").read().split()[-1] == "19"
    run._renice(0)  # what wait() does once a test waits for the run (here as root)
    if os.geteuid() == 0:
        assert niceness_in_group(run.pgid) == [0, 0]
    run.stop(grace=10)
    assert not run._alive() and not run.rc_file.exists()  # stopped, not ended
