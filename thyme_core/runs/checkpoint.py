"""Step checkpoints of a run folder, and the final Hugging Face-format weights (SFT and RL alike).

DeepSpeed writes checkpoints/<tag>/ (model, optimizer and scheduler state, per rank); a checkpoint counts
only once its COMPLETE marker is written after every rank finished, so a run killed mid-save resumes from
the previous one. Both trainers rebuild their data order from the config and the step number, so the step
is all the data position a resume needs.

Several nodes: each node's ranks save their shards on that node's disk (DeepSpeed's node-local storage:
each node's first rank writes the files DeepSpeed keeps once), and each node's first rank marks its own
folder COMPLETE. Old checkpoints are pruned only after every node marked the new one, so the nodes always
share a complete step, and a resume starts from the newest step every rank holds (`resume_deepspeed`).
The store holds one part per node (runs/remote.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

COMPLETE = "COMPLETE"
_TAG_RE = re.compile(r"^step-(\d+)$")


def tag(step: int) -> str:
    return f"step-{step:07d}"


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def complete_steps(run_dir: Path, world: int | None = None) -> list[int]:
    """Steps with a COMPLETE checkpoint; with `world`, only those saved by that many ranks (DeepSpeed cannot
    load ZeRO optimizer states into another number, and an SFT run's key leaves the rank layout out)."""
    folder = checkpoints_dir(run_dir)
    if not folder.is_dir():
        return []
    steps = []
    for d in folder.iterdir():
        m = _TAG_RE.match(d.name)
        if m and (d / COMPLETE).exists() and (world is None or _saved_by(d) in (None, world)):
            steps.append(int(m.group(1)))
    return sorted(steps)


def _saved_by(folder: Path) -> int | None:
    try:
        return json.loads((folder / COMPLETE).read_text()).get("world")
    except (OSError, ValueError):
        return None


def latest_step(run_dir: Path, world: int | None = None) -> int | None:
    steps = complete_steps(run_dir, world)
    return steps[-1] if steps else None


def mark_complete(run_dir: Path, step: int, info: dict) -> None:
    path = checkpoints_dir(run_dir) / tag(step) / COMPLETE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"step": step, **info}))
    tmp.replace(path)


def prune(run_dir: Path, keep: int) -> None:
    """Remove all but the newest `keep` complete checkpoints, and unfinished ones older than them."""
    steps = complete_steps(run_dir)
    if len(steps) <= keep:
        return
    cutoff = steps[-keep]
    for d in checkpoints_dir(run_dir).iterdir():
        m = _TAG_RE.match(d.name)
        if m and int(m.group(1)) < cutoff:
            shutil.rmtree(d, ignore_errors=True)


def node_main() -> bool:
    """Whether this rank is its node's first (torchrun's LOCAL_RANK 0): it marks and announces the node's part."""
    return os.environ.get("LOCAL_RANK", "0") == "0"


def save_deepspeed(engine, run_dir: Path, step: int, info: dict, keep: int, barrier: Callable[[], None]) -> None:
    """Every rank writes its shard; once all did, each node's first rank marks its folder COMPLETE; once all
    nodes did, each announces it to its launcher (a METRICS event, which may push the node's part to the
    store: runs/remote.py) and prunes old ones."""
    import torch.distributed as dist

    from thyme_core.runs.metrics import say

    engine.save_checkpoint(str(checkpoints_dir(run_dir)), tag=tag(step))
    barrier()
    if node_main():
        mark_complete(run_dir, step, {**info, "world": dist.get_world_size()})
    barrier()
    if node_main():
        say({"event": "checkpoint", "step": step, "path": str(checkpoints_dir(run_dir) / tag(step))})
        prune(run_dir, keep)
    barrier()


def common_step(steps_by_rank: list[list[int]]) -> int | None:
    """The newest step whose checkpoint every rank holds (each node holds its own ranks' shards), or None."""
    common = set(steps_by_rank[0]).intersection(*map(set, steps_by_rank[1:]))
    return max(common) if common else None


def resume_deepspeed(engine, run_dir: Path, ranks=None) -> int:
    """Load the newest checkpoint complete on every rank's node into the engine; returns the steps already
    taken (0: none). `ranks` (base.ranks) agree on the step: a node that died before marking the newest one
    makes every node resume from the one before."""
    from thyme_core.base.ranks import Ranks

    ranks = ranks or Ranks()
    step = common_step(ranks.everyone(complete_steps(run_dir, ranks.world)))
    if step is None:
        return 0
    engine.load_checkpoint(str(checkpoints_dir(run_dir)), tag=tag(step))
    return step


def final_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "final"


def save_final(engine, model, processor, run_dir: Path, zero_stage: int, is_main: bool) -> Path:
    """Weights in HF format (+ tokenizer, image processor) in run_dir/final; collective under ZeRO-3."""
    out = final_dir(run_dir)
    state = engine._zero3_consolidated_16bit_state_dict() if zero_stage == 3 else None
    if is_main:
        staging = out.with_name(".final.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging, state_dict=state if state is not None else model.state_dict())
        processor.tokenizer.save_pretrained(staging)
        processor.image_processor.save_pretrained(staging)
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    return out
