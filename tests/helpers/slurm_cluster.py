"""A real single-node SLURM cluster for the tests: munged, slurmctld and slurmd from Debian's
packages (`slurm-wlm`, `munge`), started in a temporary folder and stopped by pid.

    cluster = SlurmCluster(tmp_dir).start()   # ~5 s to an idle node
    cluster.env                               # SLURM_CONF=...: every client command needs it
    cluster.stop()                            # scancel, wait for an empty queue, stop our pids

Everything is private to the folder: its own munge key and socket (`AuthInfo=socket=`), free
TCP ports, its own state, spool and logs, so it neither needs nor disturbs a system munged or
SLURM. This host is the only node, with the CPUs and memory `slurmd -C` finds (memory less
2 GiB); no GPUs, no accounting (sacct says "accounting storage is disabled", as on many small
clusters). The daemons run in the foreground as children of the test process, in their own
session (a Ctrl-C of pytest reaches the tests, not them), and are stopped by their pids, never
by name. Recipe and measurements: ../shared/slurm-local.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scancel", "scontrol", "sinfo")
INSTALL_HINT = "apt-get install -y slurm-wlm munge  (as root; `make test` does it)"
PARTITION = "debug"


class ClusterError(RuntimeError):
    pass


def missing_programs() -> list[str]:
    search = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return [p for p in (*DAEMONS, *CLIENTS) if shutil.which(p, path=search) is None]


def _which(name: str) -> str:
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _node_line(mem_reserve_mib: int = 2048) -> str:
    """This host as slurmd sees it (`slurmd -C`), less `mem_reserve_mib` of memory: a node
    configured with more than it has would be drained."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("NodeName="))
    items = dict(item.split("=", 1) for item in line.split())
    items["RealMemory"] = str(max(512, int(items["RealMemory"]) - mem_reserve_mib))
    return " ".join(f"{k}={v}" for k, v in items.items()) + " NodeAddr=127.0.0.1 State=UNKNOWN"


class SlurmCluster:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: dict[str, subprocess.Popen] = {}
        self.node = ""
        self.start_seconds = 0.0

    # ------------------------------------------------------------------ start / stop

    def start(self, timeout: float = 60) -> "SlurmCluster":
        missing = missing_programs()
        if missing:
            raise ClusterError(f"SLURM tests need {', '.join(missing)}: {INSTALL_HINT}")
        if os.geteuid() != 0:
            raise ClusterError("SLURM tests start slurmd, which must run as root (CI runs `make test` as root)")
        t0 = time.monotonic()
        for d in ("state", "spool", "log", "munge"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        key = self.root / "munge" / "munge.key"
        subprocess.run([_which("mungekey"), "--create", "--keyfile", str(key)], check=True, capture_output=True)
        self._write_conf()
        try:
            self._spawn(
                "munged",
                [
                    _which("munged"),
                    "--foreground",
                    "--force",
                    "--socket",
                    str(self.munge_socket),
                    "--key-file",
                    str(key),
                    "--pid-file",
                    str(self.root / "munge" / "munged.pid"),
                    "--log-file",
                    str(self.root / "log" / "munged.log"),
                    "--seed-file",
                    str(self.root / "munge" / "munged.seed"),
                ],
            )
            self._wait_for(lambda: self.munge_socket.exists(), 20, "munged's socket")
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-f", str(self.conf)])
            self._wait_for(lambda: self.run("sinfo", "-h", check=False).returncode == 0, timeout, "slurmctld")
            self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf)])
            self._wait_for(self._node_idle, timeout, "an idle node")
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _write_conf(self) -> None:
        r = self.root
        self.node = _node_line().split()[0].split("=", 1)[1]
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=ffcvtest",
                    f"SlurmctldHost={self.node}(127.0.0.1)",  # no name lookup needed
                    "SlurmUser=root",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    f"StateSaveLocation={r}/state",
                    f"SlurmdSpoolDir={r}/spool",
                    f"SlurmctldPidFile={r}/slurmctld.pid",
                    f"SlurmdPidFile={r}/slurmd.pid",
                    f"SlurmctldLogFile={r}/log/slurmctld.log",
                    f"SlurmdLogFile={r}/log/slurmd.log",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "MpiDefault=none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "SchedulerType=sched/backfill",
                    "ReturnToService=2",
                    # A stopped job's processes get SIGKILL this long after SIGTERM (default 30 s).
                    "KillWait=5",
                    _node_line(),
                    f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        # Own session: a Ctrl-C of the test run reaches pytest (which stops us), not the daemons.
        self.procs[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env, start_new_session=True
        )
        log.close()

    def _wait_for(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise ClusterError(f"{name} exited with {p.returncode} while waiting for {what}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.2)
        raise ClusterError(f"no {what} after {timeout:.0f} s:\n{self.logs()}")

    def _node_idle(self) -> bool:
        r = self.run("sinfo", "-h", "-N", "-o", "%t", check=False)
        return r.returncode == 0 and r.stdout.strip() == "idle"

    def stop(self, timeout: float = 60) -> None:
        """Cancel every job, wait until the queue is empty (slurmd does not exit while a job
        step is still ending), then SIGTERM our daemons by pid, SIGKILL after 10 s."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--full", "-p", PARTITION, check=False)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                r = self.run("squeue", "-h", "-o", "%i", check=False)
                if r.returncode != 0 or not r.stdout.strip():
                    break
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    # ------------------------------------------------------------------ clients

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """A client command (sinfo, squeue, scontrol, ...) against this cluster."""
        r = subprocess.run([_which(cmd[0]), *cmd[1:]], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and r.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
        return r

    def job_state(self, job_id: str) -> str:
        """PENDING, RUNNING, COMPLETED, CANCELLED, ... while slurmctld remembers the job ("" after)."""
        r = self.run("squeue", "-h", "-t", "all", "-j", str(job_id), "-o", "%T", check=False)
        return r.stdout.strip() if r.returncode == 0 else ""

    def wait_state(self, job_id: str, states: set[str], timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.job_state(job_id)
            if s in states:
                return s
            time.sleep(0.3)
        raise ClusterError(f"job {job_id} not in {sorted(states)} after {timeout:.0f} s (state {s!r})")

    def start_requeued_now(self, job_id: str, timeout: float = 60) -> None:
        """SLURM holds a requeued job for ~2 minutes (BeginTime); let it start at once. Not
        within the second of the requeue: slurmd refuses credentials as old as the revocation
        of the job's last one ("Job credential revoked"), and the job then fails."""
        self.wait_state(job_id, {"PENDING"}, timeout)
        time.sleep(2)
        deadline = time.monotonic() + timeout
        while True:
            r = self.run("scontrol", "update", f"JobId={job_id}", "StartTime=now", check=False)
            if r.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        if r.returncode != 0:
            raise ClusterError(f"could not release requeued job {job_id}: {r.stderr.strip()}")

    def logs(self, lines: int = 15) -> str:
        out = []
        for path in sorted((self.root / "log").glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(out)


if __name__ == "__main__":  # bring one up by hand: python tests/helpers/slurm_cluster.py DIR
    import sys

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill PID stops the cluster too
    c = SlurmCluster(sys.argv[1]).start()
    print(f"idle in {c.start_seconds:.1f} s; export SLURM_CONF={c.conf}; pids:", {k: p.pid for k, p in c.procs.items()})
    try:
        signal.pause()
    except KeyboardInterrupt:
        c.stop()
