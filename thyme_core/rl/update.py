"""Who applies the GRPO gradient, and across how many ranks: the two things step.py leaves open.

- `Ranks`: the collectives a step needs (sum, max, gather to rank 0). `Ranks()` is one process (no
  torch.distributed); `Ranks.from_dist()` wraps an initialised process group (torchrun, gloo or nccl).
- `TorchUpdate`: plain AdamW on one process (tests, the CPU demo's in-process mode).
- `DeepSpeedUpdate`: a DeepSpeed engine (ZeRO-2 or ZeRO-3). The engine's gradient accumulation is driven by
  hand: every sequence's backward is a micro-step and only the last one is a boundary, so the number of
  sequences may change from step to step (trajectories differ in length and count) while DeepSpeed's config
  keeps gradient_accumulation_steps = 1. DeepSpeed averages gradients over ranks; step.py scales each
  sequence's loss by world / (kept sequences on all ranks) so the update is the mean over every kept
  sequence whatever the number of ranks.

A `Learner` bundles the policy (what the training forward calls), the frozen reference (or None when beta is
0), the update, and the ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


class Ranks:
    """One process: every collective is the identity."""

    rank, world = 0, 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        return list(values)

    def max(self, value: int) -> int:
        return value

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj` on rank 0 (in rank order), None elsewhere."""
        return [obj]

    def barrier(self) -> None:
        pass

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
        # gloo reduces CPU tensors; nccl needs them on this rank's GPU
        self.device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" \
            else torch.device("cpu")

    def sum(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        self.dist.all_reduce(t)
        return t.tolist()

    def max(self, value: int) -> int:
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return int(t.item())

    def gather(self, obj: Any) -> list[Any] | None:
        out = [None] * self.world if self.is_main else None
        self.dist.gather_object(obj, out, dst=0)
        return out

    def barrier(self) -> None:
        self.dist.barrier()


class TorchUpdate:
    """Plain torch: backward per sequence, one clipped AdamW step at the end."""

    def __init__(self, policy: torch.nn.Module, optimizer, max_grad_norm: float):
        self.policy, self.optimizer, self.max_grad_norm = policy, optimizer, max_grad_norm

    def begin(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def micro(self, last: bool) -> None:
        pass

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float:
        norm = 0.0
        if self.max_grad_norm > 0:
            params = [p for p in self.policy.parameters() if p.requires_grad]
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm))
        self.optimizer.step()
        return norm


class DeepSpeedUpdate:
    """A DeepSpeed engine; clipping comes from its config (gradient_clipping)."""

    def __init__(self, engine):
        self.engine = engine

    def begin(self) -> None:
        pass

    def micro(self, last: bool) -> None:
        """Before each sequence's forward: only the last backward of the step reduces and steps."""
        self.engine.set_gradient_accumulation_boundary(last)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> float:
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else 0.0


@dataclass
class Learner:
    policy: Any  # called as policy(**inputs) for the training forward (a module or a DeepSpeed engine)
    reference: Any | None  # frozen; None when beta == 0
    update: TorchUpdate | DeepSpeedUpdate
    ranks: Ranks = field(default_factory=Ranks)
