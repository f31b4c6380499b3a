"""Flow `train_sft`: a prepared catalog -> SFT weights (stage 1 on image data, stage 2 annealing).

Outputs, in the data home: runs/sft/stage<N>/<key>/ (config.json, samples.parquet, plan.json, drops.jsonl,
metrics.jsonl, checkpoints/, final/ in Hugging Face format, DONE), runs/sft/stage<N>/LATEST (the key of the
newest finished run; stage 2 starts from stage 1's), and a markdown artifact with the run's metrics.
With `dataset=NAME@HASH` (what the pipeline dispatches): the version is checked out into this worker's home,
the start model (`model` / `init_from`, a folder or NAME@HASH) pulled, and the final weights published as
the model version `publish_as` (lineage in its history, a Prefect asset); the stage's result is recorded in
the store under its key, and a stage already recorded is not run again. With `nnodes` > 1 this run is node
`node_rank` of the stage (the pipeline starts one per node); node 0 publishes the model.
Deployed on the `gpu` work pool; the same flow runs the tiny model on CPU.
"""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow, get_run_logger
from pydantic import Field

from tasks import user_errors
from tasks.stages import record_stage, show_asset, stage_done
from tasks.train import (meet_nodes, prepare_sft_run, publish_model, publish_sft_report, run_sft, sft_preset,
                         sft_stage_key, sft_values)
from thyme_core.base.home import resolve_home

user_errors.install()


@flow(name="train_sft", log_prints=True)
def train_sft(stage: Literal[1, 2] = 1, model: str | None = None,
              max_steps: Annotated[int, Field(ge=1)] | None = None, home: str | None = None,
              preset: str | None = None, init_from: str | None = None, overrides: dict | None = None,
              dataset: str = "", store: str = "", publish_as: str = "", nnodes: Annotated[int, Field(ge=1)] = 1,
              node_rank: Annotated[int, Field(ge=0)] = 0, rdzv_id: str = "",
              rdzv_timeout: Annotated[float, Field(gt=0.0)] = 120.0, system_prompt: str | None = None) -> dict:
    """SFT stage 1 (image data) or stage 2 (annealing on computation data) with torchrun + DeepSpeed.

    Args:
        stage: 1 trains on the image samples; 2 anneals on computation data from stage 1's newest weights.
        model: The model to fine-tune (stage 1): a folder on the worker's machine, or a model version
            NAME@HASH (pulled). Empty: the tiny offline Qwen2.5-VL of the home (a CPU demo).
        max_steps: Stop after this many optimizer steps. Empty: the preset's.
        home: The data home folder on the worker's machine: its catalog is the training data and runs/sft/
            gets the run. Empty: the worker's THYME_HOME, which `thyme serve --home DIR` sets, else
            ~/.local/share/thyme.
        preset: infra/presets/<name>.yaml or a path. Empty: sft_stage<N> with a model or init_from,
            sft_tiny_stage<N> without.
        init_from: Stage 2: start from these weights (a folder or NAME@HASH) instead of stage 1's newest
            finished run.
        overrides: Config fields set over the preset, e.g. {"learning_rate": 2e-5, "nproc": 8} (`thyme
            train-sft --help-config` lists them all).
        dataset: A dataset version NAME@HASH to train on (checked out into the home first); the stage is then
            recorded in `store` under its key and not run again. Empty: the home's catalog.
        store: The version store: a folder, file:///path or s3://bucket/prefix. Empty: the worker's
            THYME_STORE, else ~/.local/share/thyme-store.
        publish_as: With `dataset`: the model name the final weights are published as. Empty:
            DATASET-sft<N>.
        nnodes: Nodes of this stage; each runs this flow once with its own node_rank.
        node_rank: This node's rank (0 publishes the model and the report).
        rdzv_id: The rendezvous id the nodes meet under. Empty: derived from the stage's key.
        rdzv_timeout: Seconds to wait for every node to join.
        system_prompt: A system prompt file, as in evaluate. Empty: infra/prompts/system.txt.
    """
    home_root = str(resolve_home(home).ensure().root)
    overrides = {**(overrides or {}), **({"system_prompt": system_prompt} if system_prompt else {})}
    preset = sft_preset(stage, model, init_from, preset)
    values = sft_values(stage, model, max_steps, init_from, nnodes, overrides)
    key = sft_stage_key(preset, values, dataset, store) if dataset else None
    done = stage_done(store, key)
    if done:
        print(f"SFT stage {stage}: stage {key} already published {done['outputs']['model']}; skipped")
        return {"stage": stage, "key": key, "model": done["outputs"]["model"], "skipped": True}
    spec = prepare_sft_run(home_root, preset, values, dataset, store)
    nodes = meet_nodes(store, rdzv_id or f"sft-{key or spec.key}", nnodes, node_rank, rdzv_timeout, spec.done)
    if spec.done or nodes.finished:
        print(f"SFT stage {stage}: run {spec.key} already finished (same data, config and code); skipped")
        final = str(spec.run_dir / "final")
    else:
        final = run_sft(spec, home_root, nodes)
    result = {"stage": stage, "key": key or spec.key, "run_dir": str(spec.run_dir), "final": final,
              "skipped": spec.done or nodes.finished}
    if node_rank != 0:
        return result
    result["report"] = publish_sft_report(spec)
    if dataset:
        start = model if stage == 1 else init_from
        published, lineage = publish_model(store, str(spec.run_dir), final,
                                           publish_as or f"{dataset.partition('@')[0]}-sft{stage}", f"sft{stage}",
                                           key, {"dataset": dataset, "model": start or "tiny"})
        show_asset(published, "model", [(dataset, "dataset"), (start or "", "model")], lineage)
        record_stage(store, key, f"sft{stage}", {"model": published}, run=spec.key)
        result["model"] = published
    get_run_logger().info(f"SFT stage {stage}: run {spec.key}{' (reused)' if spec.done else ''}, final weights "
                          f"{result.get('model', final)}")
    return result
