"""Flow `thyme_pipeline`: the whole pipeline as one run, each stage on the workers it belongs to.

Stages and what passes between them (versions in the store, the only shared state):
1. prepare (pool cpu): SOURCE/SPLIT (a file, folder, s3:// prefix or hf://datasets/... repo) -> dataset
   version DATASET (tag `prepared` when replay follows);
2. replay verification (cpu): that version -> DATASET/DATASET_TAG, the replays added;
3. SFT stage 1, then stage 2 (gpu, when `sft_steps` > 0): dataset version + start model -> model versions
   DATASET-sft1, DATASET-sft2 (`nnodes` > 1: one node run per node, node 0 publishes);
4. RL (gpu, when `rl_steps` > 0): from the newest model -> DATASET-rl (`nnodes` > 1: as SFT);
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
from typing import Annotated, Literal

from prefect import flow, get_run_logger
from pydantic import Field

from flows.evaluate import evaluate
from flows.prepare_sft_data import prepare_sft_data
from flows.replay_sft_data import replay_sft_data
from flows.train_rl import train_rl
from flows.train_sft import train_sft
from tasks import user_errors
from tasks.pipeline import Stages
from thyme_core.base.names import check_name

user_errors.install()


@flow(name="thyme_pipeline", log_prints=True)
def thyme_pipeline(
    source: str,
    split: str,
    home: str | None = None,
    shard_rows: Annotated[int, Field(ge=1)] = 1000,
    max_pixels: Annotated[int, Field(ge=1)] = 100_000_000,
    verify: Literal["structure", "decode"] = "structure",
    replay: bool = True,
    min_similarity: Annotated[float, Field(ge=0.0, le=1.0)] = 0.98,
    isolation: Literal["bwrap", "none"] = "bwrap",
    dataset: str = "thyme-sft",
    dataset_tag: str = "latest",
    store: str = "",
    sft_steps: Annotated[int, Field(ge=0)] = 0,
    rl_steps: Annotated[int, Field(ge=0)] = 0,
    model: str = "",
    nproc: Annotated[int, Field(ge=0)] = 0,
    nnodes: Annotated[int, Field(ge=1)] = 1,
    sft_overrides: dict | None = None,
    rl_overrides: dict | None = None,
    eval_tsv: str = "",
    eval_backend: Literal["transformers", "vllm", "openai", "scripted"] = "transformers",
    eval_response_file: str = "",
    eval_protocol: Literal["thyme", "vlmevalkit"] = "thyme",
    eval_retries: Annotated[int, Field(ge=0)] = 0,
    dispatch: Literal["auto", "deployments", "in-process"] = "auto",
) -> dict:
    """Prepare SOURCE as SPLIT, verify it, publish it as a dataset version, and optionally train and evaluate.

    Args:
        source: A Thyme SFT or RL-form .parquet/.jsonl file, a folder of them, s3://bucket/prefix (read in
            place by range; shards of unchanged objects are skipped) or a Hub dataset hf://datasets/OWNER/NAME[@REVISION][/PATH], on
            the worker's machine.
        split: The split the samples are filed under (letters, digits, '.', '_', '-').
        home: The data home folder on the worker's machine that in-process stages read and write. Empty: the
            worker's THYME_HOME, which `thyme serve --home DIR` sets, else ~/.local/share/thyme.
        shard_rows: Prepare: the most source rows per shard; shards hold whole Parquet row groups, and a
            small file is cut finer so every core stays busy.
        max_pixels: Prepare: reject images with more pixels than this (decompression bombs).
        verify: Prepare: structure checks each JPEG's header and end marker; decode decodes every image.
        replay: Re-run every code block of the split in the sandbox and compare with the recorded outputs.
        min_similarity: Replay: pixel similarity (0 to 1) from which an output image counts as the recorded one.
        isolation: Replay and evaluate: bwrap sandboxes the code; none runs it unisolated (trusted data only).
        dataset: The dataset the prepared (and replayed) split is published as; trained models are published
            as DATASET-sft1, DATASET-sft2 and DATASET-rl.
        dataset_tag: The tag the verified dataset version gets (moved if it exists).
        store: The version store every stage reads and writes: a folder, file:///path or s3://bucket/prefix.
            Empty: the worker's THYME_STORE, else the default local store.
        sft_steps: Train SFT stage 1 then stage 2 for this many steps each. 0: no SFT.
        rl_steps: Train GRPO-ATS RL for this many steps from the newest weights. 0: no RL.
        model: The model to start from: a folder on the worker's machine or a model version NAME@HASH.
            Empty: the tiny offline model.
        nproc: SFT: processes (GPUs) per node. 0: the preset's.
        nnodes: SFT and RL: nodes of a multi-node run (one node run per node; node 0 publishes the model).
        sft_overrides: SFT: any other preset setting by name, e.g. {"learning_rate": 1e-5}.
        rl_overrides: RL: any other preset setting by name.
        eval_tsv: Evaluate the newest weights on this VLMEvalKit TSV benchmark. Empty: no evaluation.
        eval_backend: Evaluate: transformers, vllm (GPU), openai (a served model) or scripted (recorded
            responses).
        eval_response_file: Evaluate with the scripted backend: a response text, or a .jsonl per index.
        eval_protocol: Evaluate: the scoring, thyme (our matcher) or vlmevalkit (its rules and judge).
        eval_retries: Evaluate: re-run a trajectory that ends without an answer up to this many times.
        dispatch: deployments runs each stage as a child run on its pool; in-process runs the stage flows here
            over `home`; auto picks deployments when the server has them.
    """
    check_name("split", split)
    if dataset:
        check_name("dataset", dataset)
        check_name("dataset_tag", dataset_tag)
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
                                preset="rl_tiny" if tiny else "rl", overrides=rl_overrides or {}, nnodes=nnodes,
                                publish_as=f"{dataset}-rl")["model"]
        if eval_tsv:
            run.stage("evaluate", evaluate, Path(eval_tsv).stem, tsv=eval_tsv, backend=eval_backend, model=weights or "",
                      response_file=eval_response_file, isolation=isolation, protocol=eval_protocol,
                      retries=eval_retries)
        summary = run.summary()
    get_run_logger().info("thyme_pipeline: " + "; ".join(f"{r['stage']} {r['label']} {r['status']}"
                                                         for r in summary["stages"]))
    return summary
