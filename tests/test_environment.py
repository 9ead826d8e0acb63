"""The worker rule and the precision rule (pure, CPU)."""
import os

import pytest
import torch

from ffcv_inat.environment import resolve_workers, run_precision, usable_cores, why_precision_differs

pytestmark = pytest.mark.timeout(30)


def test_zero_workers_is_this_process_share_of_its_usable_cores(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert usable_cores() == len(os.sched_getaffinity(0))  # the affinity, not os.cpu_count()
    cores = usable_cores()
    assert resolve_workers(0) == cores
    assert resolve_workers(1) == 1 and resolve_workers(cores + 5) == cores  # capped: numba refuses more
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores * 4))  # torchrun, more processes than cores
    assert resolve_workers(0) == 1


def test_cpu_always_runs_fp32_and_says_why():
    cpu = torch.device("cpu")
    assert [run_precision(p, cpu) for p in ("bf16", "fp16", "fp32")] == ["fp32"] * 3
    assert why_precision_differs("fp32", cpu) == ""
    assert why_precision_differs("fp16", cpu) == "fp16 needs a CUDA GPU: on CPU everything runs fp32"
