"""Who applies the GRPO gradient, and across how many ranks: the two things step.py leaves open.

- `Ranks` (base/ranks.py, shared with SFT): the collectives a step needs (sum, max, gather to rank 0), their
  tensors on the device the backend needs. `Ranks()` is one process; `Ranks.from_dist()` a process group.
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

from thyme_core.base.ranks import DistRanks, Ranks

__all__ = ["DeepSpeedUpdate", "DistRanks", "Learner", "Ranks", "TorchUpdate"]


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
