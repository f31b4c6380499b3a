"""Flow `thyme_pipeline`: the whole pipeline as one run, each stage on the workers it belongs to.

Stages and what passes between them (versions in the store, the only shared state):
1. prepare (pool cpu): SOURCE/SPLIT (a file, folder, s3:// prefix or hf://datasets/... repo) -> dataset
   version DATASET (tag `prepared` when replay follows);
2. replay verification (cpu): that version -> DATASET/DATASET_TAG, the replays added;
3. SFT stage 1, then stage 2 (gpu, when `sft_steps` > 0): dataset version + start model -> model versions
   DATASET-sft1, DATASET-sft2 (`nnodes` > 1: one node run per node, node 0 publishes);
4. RL (gpu, when `rl_steps` > 0): from the newest model -> DATASET-rl;
5. evaluate (gpu, when `eval_tsv` is set): the newest model on the benchmark, scored by `eval_protocol`
   (thyme or vlmevalkit) with `eval_retries` of answerless trajectories.
Each stage is keyed by its input versions, config and code (thyme_core/pipeline): a stage whose result is
already recorded in the store is not run. With a server holding the stages' deployments, each stage runs as
a linked child run on its pool (tasks/dispatch.py); without (`dispatch=in-process`, or `auto` with no server
or deployments) the same flows run in this process over `home`.
Outputs: the versions above in the store, each stage's own outputs in its worker's home, a summary artifact
(stage, child run, ran or skipped, versions produced); returns the same per stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow

from flows.evaluate import evaluate
from flows.prepare_sft_data import prepare_sft_data
from flows.replay_sft_data import replay_sft_data
from flows.train_rl import train_rl
from flows.train_sft import train_sft
from tasks.pipeline import Stages


@flow(name="thyme_pipeline", log_prints=True)
def thyme_pipeline(
    source: str,
    split: str,
    home: str | None = None,
    shard_rows: int = 1000,
    max_pixels: int = 100_000_000,
    verify: Literal["structure", "decode"] = "structure",
    replay: bool = True,
    min_similarity: float = 0.98,
    isolation: Literal["bwrap", "none"] = "bwrap",
    dataset: str = "thyme-sft",
    dataset_tag: str = "latest",
    store: str = "",
    sft_steps: int = 0,
    rl_steps: int = 0,
    model: str = "",
    nproc: int = 0,
    nnodes: int = 1,
    sft_overrides: dict | None = None,
    rl_overrides: dict | None = None,
    eval_tsv: str = "",
    eval_backend: Literal["transformers", "vllm", "openai", "scripted"] = "transformers",
    eval_response_file: str = "",
    eval_protocol: Literal["thyme", "vlmevalkit"] = "thyme",
    eval_retries: int = 0,
    dispatch: Literal["auto", "deployments", "in-process"] = "auto",
) -> dict:
    """Prepare SOURCE as SPLIT, verify it, publish it as a dataset version, and optionally train and evaluate.
    `nproc` (0: the preset's) and `nnodes` shape the SFT runs; `model` is a folder or a model version."""
    with Stages(home, store, dispatch) as run:
        tiny = not model
        prepared = run.stage("prepare", prepare_sft_data, split, source=source, split=split, shard_rows=shard_rows,
                             max_pixels=max_pixels, verify=verify, dataset=dataset,
                             dataset_tag="prepared" if replay else dataset_tag)
        data = prepared["dataset"]
        if replay:
            data = run.stage("replay", replay_sft_data, split, split=split, min_similarity=min_similarity,
                             isolation=isolation, dataset=data, dataset_tag=dataset_tag)["dataset"]
        weights = model or None
        sft = {**(sft_overrides or {}), **({"nproc": nproc} if nproc else {})}
        for stage in (1, 2) if sft_steps > 0 else ():
            start = {"model": weights} if stage == 1 else {"init_from": weights}
            weights = run.stage("sft", train_sft, f"stage{stage}", stage=stage, max_steps=sft_steps, dataset=data,
                                preset=f"sft_tiny_stage{stage}" if tiny else f"sft_stage{stage}", overrides=sft,
                                nnodes=nnodes, publish_as=f"{dataset}-sft{stage}", **start)["model"]
        if rl_steps > 0:
            weights = run.stage("rl", train_rl, "rl", model=weights, max_steps=rl_steps, dataset=data,
                                preset="rl_tiny" if tiny else "rl", overrides=rl_overrides or {},
                                publish_as=f"{dataset}-rl")["model"]
        if eval_tsv:
            run.stage("evaluate", evaluate, Path(eval_tsv).stem, tsv=eval_tsv, backend=eval_backend, model=weights or "",
                      response_file=eval_response_file, isolation=isolation, protocol=eval_protocol,
                      retries=eval_retries)
        return run.summary()
