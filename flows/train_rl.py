"""Flow `train_rl`: RL prompts + a policy -> GRPO-ATS weights and every rollout in the catalog.

Outputs, in the data home: runs/rl/<key>/ (config.json, prompts.jsonl, metrics.jsonl, checkpoints/, final/ in
Hugging Face format, DONE), runs/rl/LATEST, each step's rollouts under shards/agent/rl-<key>-step-<N>/ and
shards/rl/<key>/step-<N>/ (views trajectories / turns / executions / rl_rollouts), and a markdown artifact.
Deployed on the `gpu` work pool; the same flow runs the tiny model on CPU.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from tasks import user_errors
from tasks.train_rl import prepare_rl_run, run_rl
from thyme_core.base.home import resolve_home

user_errors.install()


@flow(name="train_rl", log_prints=True)
def train_rl(model: str | None = None, data: str | None = None, max_steps: Annotated[int, Field(ge=1)] | None = None,
             home: str | None = None, preset: str | None = None, overrides: dict | None = None) -> dict:
    """GRPO-ATS RL with the sandbox in the rollout loop, on the catalog's RL prompts.

    Args:
        model: The policy to train (a model folder on the worker's machine, e.g. SFT stage 2's final/).
            Empty: the tiny offline Qwen2.5-VL of the home (a CPU demo).
        data: The split whose prompts to use. Empty: every split with an image (rl_samples, else
            sft_samples).
        max_steps: Optimizer steps in all. Empty: the preset's.
        home: The data home folder on the worker's machine: its catalog gives the prompts and runs/rl/ gets
            the run. Empty: the worker's THYME_HOME, which `thyme serve --home DIR` sets, else
            ~/.local/share/thyme.
        preset: infra/presets/<name>.yaml or a path. Empty: rl with a model, rl_tiny without.
        overrides: Config fields set over the preset, e.g. {"group_size": 8, "nproc": 4} (`thyme train-rl
            --help-config` lists them all).
    """
    home_root = str(resolve_home(home).ensure().root)
    preset = preset or ("rl" if model else "rl_tiny")
    values = {**(overrides or {}), "model": model, "split": data, "max_steps": max_steps}
    spec = prepare_rl_run(home_root, preset, {k: v for k, v in values.items() if v is not None})
    if spec.done:
        print(f"RL: run {spec.key} already finished (same prompts, config and code); skipped")
    result = run_rl(spec, home_root)
    return {**result, "skipped": spec.done}
