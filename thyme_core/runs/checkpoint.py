"""Step checkpoints of a run folder, and the final Hugging Face-format weights (SFT and RL alike).

DeepSpeed writes checkpoints/<tag>/ (model, optimizer and scheduler state, per rank); a checkpoint counts
only once rank 0 has written its COMPLETE marker after every rank finished, so a run killed mid-save
resumes from the previous one. Both trainers rebuild their data order from the config and the step
number, so the step is all the data position a resume needs.
"""

from __future__ import annotations

import json
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


def complete_steps(run_dir: Path) -> list[int]:
    folder = checkpoints_dir(run_dir)
    if not folder.is_dir():
        return []
    steps = []
    for d in folder.iterdir():
        m = _TAG_RE.match(d.name)
        if m and (d / COMPLETE).exists():
            steps.append(int(m.group(1)))
    return sorted(steps)


def latest_step(run_dir: Path) -> int | None:
    steps = complete_steps(run_dir)
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


def save_deepspeed(engine, run_dir: Path, step: int, info: dict, keep: int, is_main: bool,
                   barrier: Callable[[], None]) -> None:
    """Every rank writes its shard; rank 0 marks the checkpoint COMPLETE after all did, announces it to the
    launcher (a METRICS event, which may push it to the store: runs/remote.py) and prunes old ones."""
    from thyme_core.runs.metrics import say

    engine.save_checkpoint(str(checkpoints_dir(run_dir)), tag=tag(step))
    barrier()
    if is_main:
        mark_complete(run_dir, step, info)
        say({"event": "checkpoint", "step": step, "path": str(checkpoints_dir(run_dir) / tag(step))})
        prune(run_dir, keep)
    barrier()


def resume_deepspeed(engine, run_dir: Path) -> int:
    """Load the newest complete checkpoint into the engine; returns the steps already taken (0: none)."""
    step = latest_step(run_dir)
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
