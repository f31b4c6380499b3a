"""Flow `train_rl`: RL prompts + a policy -> GRPO-ATS weights and every rollout in the catalog.

Outputs, in the data home: runs/rl/<key>/ (config.json, prompts.jsonl, metrics.jsonl, checkpoints/, final/ in
Hugging Face format, DONE), runs/rl/LATEST, each step's rollouts under shards/agent/rl-<key>-step-<N>/ and
shards/rl/<key>/step-<N>/ (views trajectories / turns / executions / rl_rollouts), and a markdown artifact.
With `dataset=NAME@HASH` (what the pipeline dispatches) the prompts come from that version checked out into
this worker's home, `model` may be a version NAME@HASH, and the final weights are published as the model
version `publish_as`, the stage's result recorded in the store under its key (a recorded stage is skipped);
checkpoints go to the store as they are saved, and a rerun on an empty home resumes from the newest there.
With `nnodes` > 1 this run is node `node_rank` of the stage (the pipeline starts one per node); node 0
publishes the model.
Deployed on the `gpu` work pool; the same flow runs the tiny model on CPU.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from tasks import user_errors
from tasks.stages import record_stage, show_asset, stage_done
from tasks.train import meet_nodes, publish_model
from tasks.train_rl import prepare_rl_run, rl_stage_key, rl_values, run_rl
from thyme_core.base.home import resolve_home

user_errors.install()


@flow(name="train_rl", log_prints=True)
def train_rl(model: str | None = None, data: str | None = None, max_steps: Annotated[int, Field(ge=1)] | None = None,
             home: str | None = None, preset: str | None = None, overrides: dict | None = None,
             dataset: str = "", store: str = "", publish_as: str = "", nnodes: Annotated[int, Field(ge=1)] = 1,
             node_rank: Annotated[int, Field(ge=0)] = 0, rdzv_id: str = "",
             rdzv_timeout: Annotated[float, Field(gt=0.0)] = 120.0, system_prompt: str | None = None) -> dict:
    """GRPO-ATS RL with the sandbox in the rollout loop, on the catalog's RL prompts.

    Args:
        model: The policy to train: a model folder on the worker's machine (e.g. SFT stage 2's final/) or a
            model version NAME@HASH. Empty: the tiny offline Qwen2.5-VL of the home (a CPU demo).
        data: The split whose prompts to use. Empty: every split with an image (rl_samples, else
            sft_samples).
        max_steps: Optimizer steps in all. Empty: the preset's.
        home: The data home folder on the worker's machine: its catalog gives the prompts and runs/rl/ gets
            the run. Empty: the worker's THYME_HOME, which `thyme serve --home DIR` sets, else
            ~/.local/share/thyme.
        preset: infra/presets/<name>.yaml or a path. Empty: rl with a model, rl_tiny without.
        overrides: Config fields set over the preset, e.g. {"group_size": 8, "nproc": 4} (`thyme train-rl
            --help-config` lists them all).
        dataset: A dataset version NAME@HASH whose prompts to use (checked out into the home first); the
            stage is then recorded in `store` under its key and not run again. Empty: the home's catalog.
        store: The version store: a folder, file:///path or s3://bucket/prefix. Empty: the worker's
            THYME_STORE, else ~/.local/share/thyme-store.
        publish_as: With `dataset`: the model name the final weights are published as. Empty: DATASET-rl.
        nnodes: Nodes of this stage (nproc >= 1); each runs this flow once with its own node_rank.
        node_rank: This node's rank (0 publishes the model and the report).
        rdzv_id: The rendezvous id the nodes meet under. Empty: derived from the stage's key.
        rdzv_timeout: Seconds to wait for every node to join.
        system_prompt: A system prompt file, as in evaluate. Empty: infra/prompts/system.txt.
    """
    home_root = str(resolve_home(home).ensure().root)
    overrides = {**(overrides or {}), **({"system_prompt": system_prompt} if system_prompt else {})}
    preset = preset or ("rl" if model else "rl_tiny")
    values = rl_values(model, data, max_steps, overrides, nnodes)
    key = rl_stage_key(preset, values, dataset, store) if dataset else None
    done = stage_done(store, key)
    if done:
        print(f"RL: stage {key} already published {done['outputs']['model']}; skipped")
        return {"key": key, "model": done["outputs"]["model"], "skipped": True}
    spec = prepare_rl_run(home_root, preset, values, dataset, store)
    nodes = meet_nodes(store, rdzv_id or f"rl-{key or spec.key}", nnodes, node_rank, rdzv_timeout, spec.done)
    if spec.done or nodes.finished:
        print(f"RL: run {spec.key} already finished (same prompts, config and code); skipped")
    result = {**run_rl(spec, home_root, nodes), "skipped": spec.done or nodes.finished}
    if node_rank != 0:
        return result
    if dataset:
        published, lineage = publish_model(store, str(spec.run_dir), result["final"],
                                           publish_as or f"{dataset.partition('@')[0]}-rl", "rl", key,
                                           {"dataset": dataset, "model": model or "tiny"})
        show_asset(published, "model", [(dataset, "dataset"), (model or "", "model")], lineage)
        record_stage(store, key, "rl", {"model": published}, run=spec.key)
        result["model"] = published
    return result
