"""Shared synthetic datasets: made once per test session by the package itself."""
from __future__ import annotations

import os
import subprocess
import time

import pytest
from click.testing import CliRunner

from ffcv_inat.synthetic import make_imagenet, make_inat

# One run of each downstream kind of the smoke grid, plus what they need: data, 6 betons,
# 1 pretraining.
SMOKE_SLICE = ("finetune_R-8-s0", "linear_R-8-s0", "scratch_s0", "linear_random-s0")


def only_args(ids=SMOKE_SLICE) -> list[str]:
    return [a for i in ids for a in ("--only", i)]


@pytest.fixture(scope="session")
def imagenet_dir(tmp_path_factory):
    """All 1,000 real wnids, 2 train + 1 val image each, 32 px, plus odd files in class 0."""
    return make_imagenet(tmp_path_factory.mktemp("imagenet"), train_per_class=2, val_per_class=1, size=32,
                         odd_files=True)


@pytest.fixture(scope="session")
def inat_dir(tmp_path_factory):
    return make_inat(tmp_path_factory.mktemp("inat"), num_species=40, train_mini_per_class=3,
                     train_extra_per_class=5, val_per_class=2, size=32, odd_files=True)


@pytest.fixture(scope="session")
def smoke_grid(tmp_path_factory):
    """The smoke plan (R family) and a real run of SMOKE_SLICE with its dependencies, once
    per session: test_sweep_e2e.py and test_analyze_smoke.py both use it."""
    from ffcv_inat.sweep.cli import main as sweep_main

    work = tmp_path_factory.mktemp("sweep")
    plan = work / "plan.csv"
    r = CliRunner().invoke(sweep_main, ["plan", "--grid", "smoke", "--out", str(plan)])  # R-8 and all
    assert r.exit_code == 0, r.output
    start = time.time()
    r = CliRunner().invoke(sweep_main, ["run", str(plan), *only_args()])
    assert r.exit_code == 0, r.output
    return {"plan": plan, "work": work, "seconds": time.time() - start, "output": r.output}


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real single-node SLURM cluster (munged, slurmctld, slurmd from Debian's slurm-wlm and
    munge), up for the session: SLURM_CONF points every client command (sbatch, squeue, ...)
    at it. Every daemon it started is stopped by pid at the end, also after a failed test.
    Without the packages it fails with what to install; it never skips."""
    from slurm_cluster import SlurmCluster

    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous


class SmallDisk:
    """A tmpfs of a given size mounted at `path` (tests run as root, here and in CI): a real
    filesystem that fills up. `resize` makes room again (remount), as a user freeing space."""

    def __init__(self, path, megabytes: int):
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)], check=True)

    def resize(self, megabytes: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={megabytes}m", str(self.path)], check=True)

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def unmount(self) -> None:
        subprocess.run(["umount", "--lazy", str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """small_disk(megabytes) -> a SmallDisk under tmp_path; every one is unmounted at teardown."""
    disks = []

    def make(megabytes: int, name: str = "disk") -> SmallDisk:
        disks.append(SmallDisk(tmp_path / name, megabytes))
        return disks[-1]

    yield make
    for disk in disks:
        disk.unmount()
