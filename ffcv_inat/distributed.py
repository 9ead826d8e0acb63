"""One process per device, launched by torchrun (or one plain process).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; we join the process group (NCCL on GPUs,
gloo on CPU), split the recipe's global batch evenly and let only rank 0 write files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from . import UserError
from .environment import resolve_device
from .failures import MachineLacks


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(choice: str, local_rank: int) -> torch.device:
    """This process's device: the config's choice, and the GPU of its local rank."""
    if resolve_device(choice).type == "cpu":
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise MachineLacks(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices")
    return torch.device("cuda", local_rank)


def setup(device_choice: str) -> DistInfo:
    """Join the torchrun process group if there is one; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_choice, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, device)


def teardown(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def per_process_batch(global_batch: int, world_size: int) -> int:
    """The recipe's batch is global: each of the world_size processes takes an equal share."""
    if global_batch % world_size:
        raise UserError(f"data.batch_size {global_batch} is not divisible by the {world_size} processes")
    return global_batch // world_size


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()
