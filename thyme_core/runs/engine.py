"""Engine pieces SFT and RL both use: a DeepSpeed config with its "auto" fields filled, ViT freezing."""

from __future__ import annotations

import json
from pathlib import Path


def fill_deepspeed_config(path: Path, global_batch: int, micro_batch: int, accumulation: int, clip: float,
                          bf16: bool, nnodes: int = 1) -> dict:
    """A DeepSpeed config file with its "auto" fields filled (SFT and RL share the infra/deepspeed files).
    Several nodes share no disk: each node's first rank then writes the checkpoint files DeepSpeed otherwise
    leaves to global rank 0 (ZeRO-2's model states), so every node's folder loads on its own."""
    ds = json.loads(Path(path).read_text())
    ds.update(train_batch_size=global_batch, train_micro_batch_size_per_gpu=micro_batch,
              gradient_accumulation_steps=accumulation, gradient_clipping=clip)
    ds["bf16"] = {"enabled": bf16}
    if nnodes > 1:
        ds["checkpoint"] = {**ds.get("checkpoint", {}), "use_node_local_storage": True}
    return ds


def freeze_vision(model) -> int:
    """Freeze the vision tower and merger; returns how many parameters stay trainable."""
    for p in model.model.visual.parameters():
        p.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
