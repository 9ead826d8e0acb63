"""bench/throughput/isolated.py: an object in a process of its own (forked from the fork server),
called a step at a time (how `ffcv-bench loader` keeps each pipeline and the ceiling apart)."""

import os

import pytest

from ffcv_inat import UserError
from ffcv_inat.bench.throughput.isolated import Isolated


class Counter:
    def __init__(self, start: int):
        self.value = start


def make_counter(start: int) -> Counter:
    return Counter(start)


def add(counter: Counter, n: int) -> tuple[int, int]:
    counter.value += n
    return counter.value, os.getpid()


def refuse(counter: Counter) -> None:
    raise UserError("--batch 9 is larger than the 4 images: no full batch")


def crash(counter: Counter) -> None:
    raise ZeroDivisionError("a bug in the pipeline")


def make_nothing(start: int) -> Counter:
    raise UserError(f"--images {start}: not a folder")


@pytest.mark.timeout(120)
def test_an_object_lives_in_its_own_process_and_keeps_its_state():
    with Isolated(make_counter, 5, name="counter") as p:
        value, pid = p.call(add, 2)
        assert value == 7 and pid != os.getpid()
        assert p.call(add, 3) == (10, pid)  # the same object, in the same process


@pytest.mark.timeout(120)
def test_failures_come_back_as_one_line_or_with_their_traceback():
    with Isolated(make_counter, 0, name="counter") as p:
        with pytest.raises(UserError, match=r"^--batch 9 is larger than the 4 images: no full batch$"):
            p.call(refuse)
        with pytest.raises(RuntimeError, match="counter failed in its own process") as e:
            p.call(crash)
        assert "ZeroDivisionError: a bug in the pipeline" in str(e.value)
        assert p.call(add, 1)[0] == 1  # still serving after a failed call
    with Isolated(make_nothing, 3, name="nothing") as p:
        with pytest.raises(UserError, match="--images 3: not a folder"):
            p.wait_ready()
