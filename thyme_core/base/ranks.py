"""The collectives a training step needs (sum, max, gather to rank 0, barrier), with their tensors on the
device the process group's backend needs.

NCCL reduces only tensors on the rank's own CUDA device; gloo reduces CPU tensors. A tensor on the wrong one
is an error only NCCL raises, so a CPU test run never sees it: SFT crashed after its first step on CUDA for
that reason. Hence one rule, in one place: every tensor this code base hands to torch.distributed is made
by `comm_tensor(values, dtype, comm_device())`. tests/unit/test_device_discipline.py records every
torch.distributed collective of one SFT step and one RL step, with `comm_device` declared as an NCCL
group's (cuda:0), and fails when a collective gets a tensor that was not made for that device.

`Ranks()` is one process (no torch.distributed: every collective is the identity); `Ranks.from_dist()`
wraps an initialised process group (torchrun, gloo or nccl). Object collectives (`gather`) are left to
torch, which places their byte tensors itself (on the current CUDA device under NCCL).
"""

from __future__ import annotations

import os
from typing import Any

import torch


def comm_device() -> torch.device:
    """Where this rank's collective tensors must live: its current CUDA device under NCCL, else the CPU."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def comm_tensor(values, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The one way a tensor for a collective is made (the device-discipline test wraps it)."""
    return torch.tensor(values, dtype=dtype, device=device)


class Ranks:
    """One process: every collective is the identity."""

    rank, world = 0, 1
    multi_node = False  # ranks on other machines: no disk shared with rank 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        return [float(v) for v in values]

    def max(self, value: int) -> int:
        return value

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj` on rank 0 (in rank order), None elsewhere."""
        return [obj]

    def barrier(self) -> None:
        pass

    def everyone(self, obj: Any) -> list[Any]:
        """Every rank's `obj` on every rank (in rank order)."""
        return [obj]

    def agree(self, facts: dict[str, str]) -> None:
        """Every rank states `facts` (run key, start-weights fingerprint...); unless all ranks state rank 0's,
        every rank raises the same ThymeError naming the first rank and fact that differ (so none is left
        waiting in a later collective). One process agrees with itself."""
        disagreement = first_disagreement(self.everyone(facts))
        if disagreement:
            from thyme_core.base.errors import ThymeError

            raise ThymeError(disagreement)

    @staticmethod
    def from_dist() -> "Ranks":
        import torch.distributed as dist

        return DistRanks() if dist.is_available() and dist.is_initialized() else Ranks()


class DistRanks(Ranks):
    """An initialised torch.distributed process group. Every method is a collective: call on every rank."""

    def __init__(self):
        import torch.distributed as dist

        self.dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = comm_device()
        # torchrun's ranks per node (LOCAL_WORLD_SIZE) short of the world: several nodes, each its own disk
        self.multi_node = int(os.environ.get("LOCAL_WORLD_SIZE", self.world)) < self.world

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the ranks, in float64 (token counts stay exact far past 2**24)."""
        t = comm_tensor(values, torch.float64, self.device)
        self.dist.all_reduce(t)
        return t.tolist()

    def max(self, value: int) -> int:
        t = comm_tensor([value], torch.int64, self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return int(t.item())

    def gather(self, obj: Any) -> list[Any] | None:
        out = [None] * self.world if self.is_main else None
        self.dist.gather_object(obj, out, dst=0)
        return out

    def barrier(self) -> None:
        self.dist.barrier()

    def everyone(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world
        self.dist.all_gather_object(out, obj)
        return out


def first_disagreement(facts: list[dict[str, str]]) -> str:
    """'' when every rank's facts equal rank 0's, else one line naming the first rank and fact that differ."""
    for rank, theirs in enumerate(facts[1:], start=1):
        for name in sorted(set(facts[0]) | set(theirs)):
            if facts[0].get(name) != theirs.get(name):
                return (f"rank {rank} disagrees with rank 0 on the {name}: {theirs.get(name)!r} vs "
                        f"{facts[0].get(name)!r} (every node must run the same code on the same config, data "
                        "and start model)")
    return ""
