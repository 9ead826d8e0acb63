"""An object living in a process of its own, called one step at a time from this one.

`ffcv-bench loader` keeps each pipeline (and the ceiling) in such a process: its rounds still
run one after another, interleaved in time as before, but no pipeline's threads, worker
processes, allocator or libraries share a process with another's. (In one process the PyTorch
pipeline's presence took ffcv's figure from 1,256 to 508 img/s on 4,000 real photos, 2-core dev
VM; DALI's halved it too: see bench/README.md.)

    with Isolated(factory, *args, name="ffcv/seeded/cpu") as p:   # factory(*args) runs there
        t = p.call(time_round_of, 4.0)                            # fn(obj, 4.0) runs there

`factory`, `fn` and their arguments and results cross by pickle: module-level functions and
plain data. A UserError raised there is raised here with its line; any other error as a
RuntimeError carrying the other process's traceback.
"""

from __future__ import annotations

import multiprocessing
import traceback
from typing import Any, Callable

from ffcv_inat import UserError

# Each process is forked from multiprocessing's fork server, a clean process started once that
# has only imported the libraries (`PRELOAD`): nothing of this process (threads, numba's and
# torch's pools, a CUDA context) is inherited, as with spawn, but a new process starts in a
# fraction of a second instead of the ~8 s of importing torch and ffcv, whose import compiles
# numba code (2-core dev VM). Preloading starts no threads; what a module fails to preload is
# imported by the process itself.
# Names, not imports: ffcv_inat.loader imports its factory lazily, the server does it once here.
PRELOAD = [
    "torch",
    "torchvision",
    "ffcv_inat.loader.factory",
    "ffcv_inat.bench.throughput.loader",
    "ffcv_inat.bench.throughput.ceiling",
]
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)
START_TIMEOUT_S = 600  # imports of torch, torchvision and ffcv (numba compiles) on a loaded 2-core VM


def _serve(conn, factory: Callable, args: tuple) -> None:
    """The other process: make the object, then run each call sent until None comes."""
    try:
        obj = factory(*args)
    except BaseException as e:  # noqa: BLE001 - every failure goes back as a reply
        conn.send(_failure(e))
        return
    conn.send(("ok", None))
    while True:
        message = conn.recv()
        if message is None:
            break
        fn, call_args = message
        try:
            conn.send(("ok", fn(obj, *call_args)))
        except BaseException as e:  # noqa: BLE001
            conn.send(_failure(e))
    conn.close()


def _failure(e: BaseException) -> tuple[str, str]:
    if isinstance(e, UserError):
        return "user", str(e)
    return "error", traceback.format_exc()


class Isolated:
    """`factory(*args)` made in a new process (not daemonic, so that it may start worker
    processes of its own, as a PyTorch DataLoader does); `call(fn, *a)` runs `fn(obj, *a)` there."""

    def __init__(self, factory: Callable, *args, name: str):
        self.name = name
        self._conn, child = _CONTEXT.Pipe()
        self._process = _CONTEXT.Process(target=_serve, args=(child, factory, args), name=name, daemon=False)
        self._process.start()
        child.close()
        self._ready = False

    def wait_ready(self) -> None:
        """Block until the object is made (imports and construction); raises its failure."""
        if not self._ready:
            self._reply(START_TIMEOUT_S)
            self._ready = True

    def call(self, fn: Callable, *args) -> Any:
        self.wait_ready()
        self._conn.send((fn, args))
        return self._reply(None)

    def _reply(self, timeout: float | None) -> Any:
        if not self._conn.poll(timeout):
            raise RuntimeError(f"{self.name}: no reply in {timeout} s")
        try:
            status, value = self._conn.recv()
        except EOFError:
            self._process.join(5)
            raise RuntimeError(
                f"{self.name}: its process ended (exit code {self._process.exitcode}) without a reply"
            ) from None
        if status == "user":
            raise UserError(value)
        if status == "error":
            raise RuntimeError(f"{self.name} failed in its own process:\n{value}")
        return value

    def close(self, timeout: float = 60) -> None:
        """Let the object's process end on its own (its workers stop), else stop it."""
        if self._process.is_alive():
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(10)
        self._conn.close()

    def __enter__(self) -> "Isolated":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
