"""What a pipeline costs its machine while it runs: the CPU seconds and anonymous memory of this
process and its descendants (from /proc), the GPU memory its epochs add, and the wait for
queued GPU work before a clock stops."""

from __future__ import annotations

import os


def parse_proc_stat(text: str) -> tuple[int, int, int]:
    """(pid, parent pid, user + system clock ticks) from the text of /proc/<pid>/stat. The
    command name (field 2) may hold spaces and parentheses, so fields are counted after its
    last ')'."""
    pid = int(text[: text.index(" ")])
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): field 4 is the parent pid, fields 14 and 15 utime and stime
    return pid, int(rest[1]), int(rest[11]) + int(rest[12])


def _process_tree() -> dict[int, int] | None:
    """This process and its living descendants (the DataLoader's worker processes, spawned by
    it), each with its CPU clock ticks so far (user + system), from one read of /proc/*/stat;
    None where /proc is missing or this process's own entry is unreadable."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                pid, ppid, t = parse_proc_stat(f.read())
        except (OSError, ValueError, IndexError):  # gone meanwhile, or unreadable
            continue
        children.setdefault(ppid, []).append(pid)
        ticks[pid] = t
    if os.getpid() not in ticks:
        return None
    tree, todo = {}, [os.getpid()]
    while todo:
        pid = todo.pop()
        tree[pid] = ticks[pid]
        todo += children.get(pid, [])
    return tree


def cpu_seconds() -> float | None:
    """CPU seconds (user + system) used so far by this process, all its threads (ffcv's workers,
    the GPU path's decoding thread) included, and by its living descendants. None where /proc
    is missing. A descendant that has exited no longer counts: the persistent workers live
    through every measured epoch."""
    tree = _process_tree()
    return None if tree is None else sum(tree.values()) / os.sysconf("SC_CLK_TCK")


def proc_status_kb(text: str, key: str) -> int | None:
    """A `key:  N kB` line of /proc/<pid>/status, in kB; None without it."""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def anon_memory_mb() -> float | None:
    """Anonymous and shared memory of this process and its living descendants, MiB: RssAnon +
    RssShmem of each one's /proc/PID/status (shared memory: the batches a DataLoader's workers
    pass). Pages a process shares copy-on-write with the fork server it came from count in full
    from the start, so writing to them later (Python touches every object it uses) adds nothing.
    File pages (the beton's mapping, the page cache) are not counted. None where /proc is missing."""
    tree = _process_tree()
    if tree is None:
        return None
    kb = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/status") as f:
                text = f.read()
        except OSError:
            continue
        kb += (proc_status_kb(text, "RssAnon") or 0) + (proc_status_kb(text, "RssShmem") or 0)
    return kb / 1024


def gpu_memory_start() -> int | None:
    """Bytes the caching allocator holds in tensors now, the peak counter reset to it; None
    without CUDA in use."""
    import torch

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def gpu_memory_added(start: int | None) -> float | None:
    """MiB of GPU memory in torch tensors at the epoch's peak above what was held before it: the
    loader's batches, queues and (GPU path) decode and resize buffers. Not counted: nvJPEG's own
    buffers (it allocates outside torch) and memory the caching allocator keeps reserved."""
    import torch

    if start is None:
        return None
    return (torch.cuda.max_memory_allocated() - start) / 2**20


def synchronize_cuda() -> None:
    """Wait for all queued GPU work (every stream: ffcv's transfers, the GPU path's side stream)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
