"""Every rollout of an RL step in the catalog: trajectory, turns, executions, and its RL row.

A step publishes two folders, each written atomically (fsio.atomic_dir), so a folder that exists is complete:
- shards/agent/rl-<key>-step-<N>/: the agent's own trajectory / turn / execution records (agent/records.py),
  so `trajectories`, `turns`, `executions` hold RL rollouts next to inference and evaluation;
- shards/rl/<key>/step-<N>/rl_rollouts.parquet: one RlRolloutRecord per rollout (reward, reason, the reward's
  parts, advantage, group, member, kept, limit), the `rl_rollouts` view.
The trajectory's run_id is "rl-<key>" and its sample_id "s<step>/<prompt>:<member>", the same in both, so the
views join on (run_id, sample_id) = (run, sample_id). A resumed run that publishes a step again keeps the
first copy (same deterministic rollouts).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow.parquet as pq

from thyme_core import catalog
from thyme_core.agent import records
from thyme_core.base.fsio import atomic_dir
from thyme_core.base.home import DataHome
from thyme_core.catalog.schema import RlRolloutRecord, to_table

TABLE = "rl"


def run_id(key: str) -> str:
    return f"rl-{key}"


def step_dir(home: DataHome, key: str, step: int) -> Path:
    return home.shards_dir / TABLE / key / f"step-{step:05d}"


def rollout_records(key: str, step: int, result, group_size: int, backend: str = "", model: str = ""
                    ) -> tuple[list, list[RlRolloutRecord]]:
    """(agent rows as records.publish takes them, RL rows) of one StepResult."""
    run = run_id(key)
    agent_rows, rl_rows = [], []
    advantages = result.advantages.advantages.tolist()
    for i, r in enumerate(result.rollouts):
        sid = f"s{step:05d}/{r.trajectory.sample.sample_id}"
        traj, turns, execs = records.to_records(r.trajectory, run, backend=backend, model=model)
        traj = dataclasses.replace(traj, sample_id=sid)
        turns = [dataclasses.replace(t, sample_id=sid) for t in turns]
        execs = [dataclasses.replace(e, sample_id=sid) for e in execs]
        agent_rows.append((traj, turns, execs))
        reward, parts = result.rewards[i], result.rewards.parts[i]
        rl_rows.append(RlRolloutRecord(
            run=run, step=step, group=i // group_size, member=r.member, prompt_id=r.prompt.prompt_id,
            sample_id=sid, reward=_float(reward), reward_reason=result.rewards.reasons[i],
            reward_format=_float(parts.get("format")), reward_accuracy=_float(parts.get("accuracy")),
            reward_consistency=_float(parts.get("consistency")),
            advantage=float(advantages[i]), kept=bool(result.keep[i]), limit=r.limit))
    return agent_rows, rl_rows


def _float(value) -> float | None:
    return None if value is None else float(value)


def publish_step(home: DataHome, key: str, step: int, result, group_size: int, backend: str = "",
                 model: str = "") -> Path:
    """Write one step's rollouts (both folders); returns the RL folder."""
    agent_rows, rl_rows = rollout_records(key, step, result, group_size, backend, model)
    records.publish(home, f"{run_id(key)}-step-{step:05d}", agent_rows)
    final = step_dir(home, key, step)
    with atomic_dir(final, home.tmp_dir) as stage:
        pq.write_table(to_table(RlRolloutRecord, rl_rows), stage / "rl_rollouts.parquet", compression="zstd")
    catalog.publish(home)
    return final
