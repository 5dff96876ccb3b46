"""DDP plumbing: one process per device under torchrun, NCCL on GPU and gloo on CPU.

Without torchrun (no WORLD_SIZE in the environment, or WORLD_SIZE=1) everything runs in this
process and the collective helpers are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from wsolbench.config import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def is_main_process() -> bool:
    """Whether this process is rank 0 of a torchrun launch (or the only process): it alone writes."""
    return os.environ.get("RANK", "0") == "0"


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """`auto` → the local CUDA device when one is available, else CPU."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("device: 'cuda' asked for, but no CUDA device is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(preference: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (idempotent), or describe the single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if world <= 1:
        return DistInfo(0, 1, device)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), device)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum_(array: np.ndarray, info: DistInfo) -> None:
    """Sum an integer ndarray over all ranks in place, exactly (int64 on the wire)."""
    if not info.enabled:
        return
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"only integer counts reduce exactly; got {array.dtype}")
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
    if info.device.type == "cuda":
        tensor = tensor.to(info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    array[...] = tensor.cpu().numpy().astype(array.dtype)


def all_gather_object(obj: Any, info: DistInfo) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...]; [obj] in a single process."""
    if not info.enabled:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
