"""Every run a home holds, derived from what is there (nothing kept by hand): SFT and RL runs from their
folders under runs/, evaluation and agent runs from the trajectories, prepare and replay work from the
catalog's shard summaries and replay rows.

A training run's status comes from its folder: `done` when DONE is there, else `stopped at step N` (its newest
metrics line) or `not started`; a running one looks the same as a stopped one, since nothing in the folder
says which. Its inputs are run.json's hashes (dataset / prompts, config, code) and config.json's model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from thyme_core.base.home import DataHome
from thyme_core.runs.plans import read_json


@dataclass(frozen=True)
class TrainRun:
    kind: str  # sft / rl
    stage: int  # SFT stage (1, 2); 0 for RL
    key: str
    run_dir: Path
    status: str
    steps: int  # steps with a metrics record
    inputs: dict = field(default_factory=dict)  # run.json minus the home
    config: dict = field(default_factory=dict)


def read_metrics(run_dir: Path, required: str) -> list[dict]:
    """metrics.jsonl as one record per step (the last written: a resumed run rewrites the steps it redid), only
    records that hold `required` (SFT writes event lines too). Broken lines are skipped (a line being written)."""
    path = Path(run_dir) / "metrics.jsonl"
    by_step: dict[int, dict] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and required in rec and isinstance(rec.get("step"), int):
            by_step[rec["step"]] = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                    for k, v in rec.items()}
    return [by_step[s] for s in sorted(by_step)]


def _status(run_dir: Path, steps: list[dict]) -> str:
    if (run_dir / "DONE").exists():
        return "done"
    return f"stopped at step {steps[-1]['step']}" if steps else "not started"


def _train_run(kind: str, stage: int, run_dir: Path, required: str) -> TrainRun:
    steps = read_metrics(run_dir, required)
    inputs = {k: v for k, v in read_json(run_dir / "run.json").items() if k != "home"}
    return TrainRun(kind, stage, run_dir.name, run_dir, _status(run_dir, steps), len(steps), inputs,
                    read_json(run_dir / "config.json"))


def train_runs(home: DataHome) -> list[TrainRun]:
    """SFT runs (runs/sft/stage<N>/<key>/) and RL runs (runs/rl/<key>/), newest folder first within a kind."""
    runs_root = Path(home.root) / "runs"
    found = []
    for stage_dir in sorted((runs_root / "sft").glob("stage*")):
        stage = int(stage_dir.name[5:]) if stage_dir.name[5:].isdigit() else 0
        for d in _run_dirs(stage_dir):
            found.append(_train_run("sft", stage, d, "loss"))
    for d in _run_dirs(runs_root / "rl"):
        found.append(_train_run("rl", 0, d, "reward_mean"))
    return found


def _run_dirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    dirs = [d for d in folder.iterdir() if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")]
    return sorted(dirs, key=lambda d: d.stat().st_mtime, reverse=True)


def find_train_run(home: DataHome, kind: str, key: str, stage: int = 0) -> TrainRun | None:
    """The run of that kind and key, or None; the key never builds a path (it is matched against the folders)."""
    for run in train_runs(home):
        if run.kind == kind and run.key == key and (kind != "sft" or run.stage == stage):
            return run
    return None
