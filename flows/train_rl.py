"""Flow `train_rl`: RL prompts + a policy -> GRPO-ATS weights and every rollout in the catalog.

Outputs, in the data home: runs/rl/<key>/ (config.json, prompts.jsonl, metrics.jsonl, checkpoints/, final/ in
Hugging Face format, DONE), runs/rl/LATEST, each step's rollouts under shards/agent/rl-<key>-step-<N>/ and
shards/rl/<key>/step-<N>/ (views trajectories / turns / executions / rl_rollouts), and a markdown artifact.
With `dataset=NAME@HASH` (what the pipeline dispatches) the prompts come from that version checked out into
this worker's home, `model` may be a version NAME@HASH, and the final weights are published as the model
version `publish_as`, the stage's result recorded in the store under its key (a recorded stage is skipped).
Deployed on the `gpu` work pool; the same flow runs the tiny model on CPU.
"""

from __future__ import annotations

from prefect import flow

from tasks.stages import record_stage, show_asset, stage_done
from tasks.train import publish_model
from tasks.train_rl import prepare_rl_run, rl_stage_key, rl_values, run_rl
from thyme_core.base.home import resolve_home


@flow(name="train_rl", log_prints=True)
def train_rl(model: str | None = None, data: str | None = None, max_steps: int | None = None,
             home: str | None = None, preset: str | None = None, overrides: dict | None = None,
             dataset: str = "", store: str = "", publish_as: str = "",
             system_prompt: str | None = None) -> dict:
    """GRPO-ATS on the catalog's RL prompts. The preset defaults to `rl` with a model, `rl_tiny` without.
    `system_prompt`: a system prompt file (default infra/prompts/system.txt), as in `evaluate`."""
    home_root = str(resolve_home(home).ensure().root)
    overrides = {**(overrides or {}), **({"system_prompt": system_prompt} if system_prompt else {})}
    preset = preset or ("rl" if model else "rl_tiny")
    values = rl_values(model, data, max_steps, overrides)
    key = rl_stage_key(preset, values, dataset, store) if dataset else None
    done = stage_done(store, key)
    if done:
        print(f"RL: stage {key} already published {done['outputs']['model']}; skipped")
        return {"key": key, "model": done["outputs"]["model"], "skipped": True}
    spec = prepare_rl_run(home_root, preset, values, dataset, store)
    if spec.done:
        print(f"RL: run {spec.key} already finished (same prompts, config and code); skipped")
    result = {**run_rl(spec, home_root), "skipped": spec.done}
    if dataset:
        published, lineage = publish_model(store, str(spec.run_dir), result["final"],
                                           publish_as or f"{dataset.partition('@')[0]}-rl", "rl", key,
                                           {"dataset": dataset, "model": model or "tiny"})
        show_asset(published, "model", [(dataset, "dataset"), (model or "", "model")], lineage)
        record_stage(store, key, "rl", {"model": published}, run=spec.key)
        result["model"] = published
    return result
