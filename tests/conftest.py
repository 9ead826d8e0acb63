"""Shared synthetic datasets and the smoke grid: made once per test session by the package itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers.background import BackgroundRun
from helpers.smoke_grid import only_args
from ffcv_inat.synthetic import make_imagenet, make_inat


@pytest.fixture(scope="session")
def imagenet_dir(tmp_path_factory):
    """All 1,000 real wnids, 2 train + 1 val image each, 32 px, plus odd files in class 0."""
    return make_imagenet(
        tmp_path_factory.mktemp("imagenet"), train_per_class=2, val_per_class=1, size=32, odd_files=True
    )


@pytest.fixture(scope="session")
def inat_dir(tmp_path_factory):
    return make_inat(
        tmp_path_factory.mktemp("inat"),
        num_species=40,
        train_mini_per_class=3,
        train_extra_per_class=5,
        val_per_class=2,
        size=32,
        odd_files=True,
    )


@pytest.fixture
def gpu_path_on_cpu(monkeypatch):
    """data.decode gpu runs the GPU path's code on the CPU, in this process and in the commands
    it starts ($FFCV_INAT_GPU_PATH_ON_CPU)."""
    from ffcv_inat.loader import GPU_PATH_ON_CPU

    monkeypatch.setenv(GPU_PATH_ON_CPU, "1")


# Fixtures made by a process started in the background at the session's first test
# (tests/helpers/background.py), when a test of the session needs them.
BACKGROUND_FIXTURES = ("smoke_grid", "torchrun_two_process_run", "device_run_script")


def session_uses(request, fixture: str) -> bool:
    return any(fixture in getattr(item, "fixturenames", ()) for item in request.session.items)


@pytest.hookimpl(trylast=True)  # after -k / -m have deselected
def pytest_collection_modifyitems(config, items):
    """The users of a background fixture run last (in their order), so that what they wait for
    is made while the other tests run."""
    items.sort(key=lambda item: any(f in getattr(item, "fixturenames", ()) for f in BACKGROUND_FIXTURES))


@pytest.fixture(scope="session", autouse=True)
def smoke_grid_in_background(request, tmp_path_factory):
    """Plans the smoke grid (R family) and starts its real run of SMOKE_SLICE with dependencies
    in the background at the session's first test, when any test of the session needs it: its
    ~12 processes then use the core the other tests leave idle (tests/helpers/background.py)."""
    if not session_uses(request, "smoke_grid"):
        yield None
        return
    from ffcv_inat.sweep.cli import main as sweep_main

    work = tmp_path_factory.mktemp("sweep")
    plan = work / "plan.csv"
    r = CliRunner().invoke(sweep_main, ["plan", "--grid", "smoke", "--out", str(plan)])  # R-8 and all
    assert r.exit_code == 0, r.output
    run = BackgroundRun(
        [[sys.executable, "-m", "ffcv_inat.sweep.cli", "run", str(plan), *only_args()]],
        tmp_path_factory.mktemp("smoke_sweep_process"),
    )
    try:
        yield {"plan": plan, "work": work, "run": run}
    finally:
        run.stop()


@pytest.fixture(scope="session")
def smoke_grid(smoke_grid_in_background):
    """The smoke plan and its run of SMOKE_SLICE, once per session: test_sweep_e2e.py,
    test_analyze_smoke.py and test_sweep_slurm.py use it."""
    started = smoke_grid_in_background
    p = started["run"].result()  # the first user's timeout allows for making it
    assert p.returncode == 0, p.stdout
    return {"plan": started["plan"], "work": started["work"], "output": p.stdout}


@pytest.fixture(scope="session", autouse=True)
def torchrun_two_process_run_in_background(request, tmp_path_factory):
    """A real 2-process DistributedDataParallel training run (gloo on CPU) launched by torchrun
    through tests/helpers/rank_writes.py, which records which rank moves which file into place; started
    in the background at the session's first test, when a test of the session needs it.
    3 classes x 5 val images = 15: an odd count, so ffcv's distributed order pads rank 1 with a
    repeat and the evaluation must count every image exactly once."""
    if not session_uses(request, "torchrun_two_process_run"):
        yield None
        return
    root = tmp_path_factory.mktemp("torchrun")
    data, run_dir, writes = root / "data", root / "run", root / "writes"
    writes.mkdir()
    train, val = data / "A_train.beton", data / "A_val.beton"  # what imagenet_a_betons writes
    make_betons = [
        sys.executable,
        "-c",
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from helpers.train_data import imagenet_a_betons;"
        "imagenet_a_betons(Path(sys.argv[2]), k=3, train_per_class=24, val_per_class=5)",
        str(Path(__file__).parent),
        str(data),
    ]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(Path(__file__).parent / "helpers" / "rank_writes.py"),
        "--recipe",
        "smoke_cpu.yaml",
        "--train",
        str(train),
        "--val",
        str(val),
        "--out",
        str(run_dir),
        "--set",
        "schedule.epochs=1",
        "--set",
        "schedule.max_steps_per_epoch=2",
        "--set",
        "eval.batch_size=8",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK_WRITES_DIR": str(writes)}
    run = BackgroundRun(
        [make_betons, torchrun], tmp_path_factory.mktemp("torchrun_process"), env=env, separate_stderr=True
    )
    try:
        yield {"val": val, "run_dir": run_dir, "writes": writes, "run": run}
    finally:
        run.stop()


@pytest.fixture(scope="session")
def torchrun_two_process_run(torchrun_two_process_run_in_background):
    """The finished run: val beton, run dir, the folder of rank<N>.txt records, its stdout."""
    started = torchrun_two_process_run_in_background
    p = started["run"].result()
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return {**{k: started[k] for k in ("val", "run_dir", "writes")}, "stdout": p.stdout}


@pytest.fixture(scope="session", autouse=True)
def device_run_script_in_background(request, tmp_path_factory):
    """bench/gpu/device_run.sh with tiny sizes and failing steps (tests/helpers/device_run.py), from the
    filesystem's root, started in the background at the session's first test when a test of the
    session needs it: ~15 processes of torch and ffcv start-up, mostly one core each."""
    if not session_uses(request, "device_run_script"):
        yield None
        return
    from helpers.device_run import FAILING_STEPS, SCRIPT, TINY, real_photos_beton

    folder = tmp_path_factory.mktemp("device_run")
    out = folder / "out"
    env = {
        **os.environ,
        "OUT": str(out),
        "PYTHON": sys.executable,
        **TINY,
        **FAILING_STEPS,
        "REAL_BETON": str(real_photos_beton(folder)),
    }
    run = BackgroundRun([["bash", "-c", 'cd / && exec bash "$0"', str(SCRIPT)]], folder, env=env, separate_stderr=True)
    try:
        yield {"out": out, "run": run}
    finally:
        run.stop()


@pytest.fixture(scope="session")
def device_run_script(device_run_script_in_background):
    """The finished run: its CompletedProcess (exit status, stdout, stderr) and its $OUT."""
    started = device_run_script_in_background
    return {"result": started["run"].result(), "out": started["out"]}


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real single-node SLURM cluster (munged, slurmctld, slurmd from Debian's slurm-wlm and
    munge), up for the session: SLURM_CONF points every client command (sbatch, squeue, ...)
    at it. Every daemon it started is stopped by pid at the end, also after a failed test.
    Without the packages it fails with what to install; it never skips."""
    from helpers.slurm_cluster import SlurmCluster

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
