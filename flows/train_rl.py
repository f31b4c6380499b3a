"""Flow `train_rl`: RL prompts + a policy -> GRPO-ATS weights and every rollout in the catalog.

Outputs, in the data home: runs/rl/<key>/ (config.json, prompts.jsonl, metrics.jsonl, checkpoints/, final/ in
Hugging Face format, DONE), runs/rl/LATEST, each step's rollouts under shards/agent/rl-<key>-step-<N>/ and
shards/rl/<key>/step-<N>/ (views trajectories / turns / executions / rl_rollouts), and a markdown artifact.
Deployed on the `gpu` work pool; the same flow runs the tiny model on CPU.
"""

from __future__ import annotations

from prefect import flow

from tasks.train_rl import prepare_rl_run, run_rl
from thyme_core.base.home import resolve_home


@flow(name="train_rl", log_prints=True)
def train_rl(model: str | None = None, data: str | None = None, max_steps: int | None = None,
             home: str | None = None, preset: str | None = None, overrides: dict | None = None,
             system_prompt: str | None = None) -> dict:
    """GRPO-ATS on the catalog's RL prompts. The preset defaults to `rl` with a model, `rl_tiny` without.
    `system_prompt`: a system prompt file (default infra/prompts/system.txt), as in `evaluate`."""
    home_root = str(resolve_home(home).ensure().root)
    preset = preset or ("rl" if model else "rl_tiny")
    values = {**(overrides or {}), "model": model, "split": data, "max_steps": max_steps,
              "system_prompt": system_prompt}
    spec = prepare_rl_run(home_root, preset, {k: v for k, v in values.items() if v is not None})
    if spec.done:
        print(f"RL: run {spec.key} already finished (same prompts, config and code); skipped")
    result = run_rl(spec, home_root)
    return {**result, "skipped": spec.done}
