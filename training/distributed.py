"""Training in several processes under torchrun: ranks, the process group, reductions.

    torchrun --nproc-per-node 2 -m training --data mnist --out models/mnist-vae/2
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 1 --rdzv-backend c10d \
             --rdzv-endpoint HOST:29500 -m training ...      # and --node-rank 1 on the other machine

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE for every process, and the
rendezvous address; `Processes.from_environment` reads them (a plain `python -m training`
is rank 0 of 1). The process group uses NCCL on CUDA and gloo on the CPU. Every process
trains on its share of each batch (training/data.py) under DistributedDataParallel, which
averages the gradients; only rank 0 writes checkpoints, the bundle and reports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # reductions happen here

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls) -> Processes:
        env = os.environ
        return cls(
            rank=int(env.get("RANK", 0)),
            world_size=int(env.get("WORLD_SIZE", 1)),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            local_world_size=int(env.get("LOCAL_WORLD_SIZE", 1)),
        )

    def start(self, device: torch.device) -> Processes:
        """Join the process group (when there are several processes) on `device`; return self on it."""
        if self.distributed and not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return Processes(self.rank, self.world_size, self.local_rank, self.local_world_size, device)

    def stop(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over all processes (float64); the values themselves in one process."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return [float(v) for v in tensor.tolist()]

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` (any picklable object), in every process."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]
