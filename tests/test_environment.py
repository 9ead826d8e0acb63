"""The worker rule and the precision rule (pure, CPU)."""

import os
from contextlib import contextmanager

import pytest
import torch

from ffcv_inat.environment import resolve_workers, run_precision, usable_cores, why_precision_differs

pytestmark = pytest.mark.timeout(30)


@contextmanager
def pinned_to(cpus: set[int]):
    """This thread's CPU affinity set to `cpus` (as SLURM, cgroups or taskset would), then restored."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def test_workers_follow_the_cpu_affinity_and_this_process_share_of_it(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    allowed = sorted(os.sched_getaffinity(0))
    with pinned_to({allowed[-1]}):  # one core, whatever the machine has
        assert usable_cores() == 1
        assert resolve_workers(0) == 1 and resolve_workers(1) == 1 and resolve_workers(4) == 1  # capped
    if len(allowed) >= 2:  # a share needs two cores to split (CI and the dev VM have 2)
        with pinned_to(set(allowed[:2])):
            assert usable_cores() == 2
            assert resolve_workers(0) == 2 and resolve_workers(1) == 1 and resolve_workers(7) == 2
            monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: two processes share the affinity
            assert resolve_workers(0) == 1 and resolve_workers(2) == 2
            monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # more processes than cores: at least 1 each
            assert resolve_workers(0) == 1


def test_cpu_always_runs_fp32_and_says_why():
    cpu = torch.device("cpu")
    assert [run_precision(p, cpu) for p in ("bf16", "fp16", "fp32")] == ["fp32"] * 3
    assert why_precision_differs("fp32", cpu) == ""
    assert why_precision_differs("fp16", cpu) == "fp16 needs a CUDA GPU: on CPU everything runs fp32"
