"""Flow `thyme_pipeline`: the whole pipeline as one scheduled, re-runnable run.

Stages, each a subflow or task whose work is keyed by content, so a rerun skips what has not changed:
1. prepare: shards keyed by (input file hash, prepare config, code version);
2. replay verification: keyed by (prepare shard key, replay config, sandbox code version);
3. push a dataset version (when `dataset` is set): content-addressed, unchanged content uploads nothing;
4. SFT stage 1 then stage 2 (when `sft_steps` > 0): runs keyed by (sample ids, config hash, code version);
5. RL (when `rl_steps` > 0): GRPO-ATS from the stage-2 weights (else `model`), keyed by (prompts, config
   hash, code version);
6. evaluate (when `eval_tsv` is set): shards keyed by (benchmark rows, backend, model, agent config), with the
   newest weights trained here, else `model`.
Outputs: everything the stages write in the data home (and the store); returns each stage's counts
(shards run and reused, the version's manifest hash, the run keys).
"""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow
from pydantic import Field

from flows.evaluate import evaluate
from flows.prepare_sft_data import prepare_sft_data
from flows.replay_sft_data import replay_sft_data
from flows.train_rl import train_rl
from flows.train_sft import train_sft
from tasks import user_errors
from tasks.versions import push_version
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
    dataset: str = "",
    dataset_tag: str = "latest",
    store: str = "",
    sft_steps: Annotated[int, Field(ge=0)] = 0,
    rl_steps: Annotated[int, Field(ge=0)] = 0,
    model: str = "",
    eval_tsv: str = "",
    eval_backend: Literal["transformers", "vllm", "openai", "scripted"] = "transformers",
    eval_response_file: str = "",
) -> dict:
    """The whole pipeline: prepare a split, verify it, and optionally publish a version, train and evaluate.

    Args:
        source: A Thyme SFT or RL-form .parquet/.jsonl file, a folder of them, or s3://bucket/prefix (only new
            or changed objects are downloaded), on the worker's machine.
        split: The split the samples are filed under (letters, digits, '.', '_', '-').
        home: The data home folder on the worker's machine that every stage reads and writes. Empty: the
            worker's THYME_HOME, which `thyme serve --home DIR` sets, else ~/.local/share/thyme.
        shard_rows: Prepare: the most source rows per shard; shards hold whole Parquet row groups, and a
            small file is cut finer so every core stays busy.
        max_pixels: Prepare: reject images with more pixels than this (decompression bombs).
        verify: Prepare: structure checks each JPEG's header and end marker; decode decodes every image.
        replay: Re-run every code block of the split in the sandbox and compare with the recorded outputs.
        min_similarity: Replay: pixel similarity (0 to 1) from which an output image counts as the recorded one.
        isolation: Replay and evaluate: bwrap sandboxes the code; none runs it unisolated (trusted data only).
        dataset: Push the home as a version of this dataset name after replay. Empty: no version.
        dataset_tag: The tag the pushed version gets (moved if it exists).
        store: Where versions go: a folder, file:///path or s3://bucket/prefix. Empty: the worker's
            THYME_STORE, else the default local store.
        sft_steps: Train SFT stage 1 then stage 2 for this many steps each. 0: no SFT.
        rl_steps: Train GRPO-ATS RL for this many steps from the newest weights. 0: no RL.
        model: The model to start from (a folder on the worker's machine). Empty: the tiny offline model.
        eval_tsv: Evaluate the newest weights on this VLMEvalKit TSV benchmark. Empty: no evaluation.
        eval_backend: Evaluate: transformers, vllm (GPU), openai (a served model) or scripted (recorded
            responses).
        eval_response_file: Evaluate with the scripted backend: a response text, or a .jsonl per index.
    """
    check_name("split", split)
    if dataset:
        check_name("dataset", dataset)
        check_name("dataset_tag", dataset_tag)
    stages: dict = {"prepare": prepare_sft_data(source=source, split=split, home=home, shard_rows=shard_rows,
                                                max_pixels=max_pixels, verify=verify)}
    if replay:
        stages["replay"] = replay_sft_data(split=split, home=home, min_similarity=min_similarity,
                                           isolation=isolation)
    if dataset:
        from thyme_core.base.home import resolve_home

        stages["version"] = push_version(str(resolve_home(home).root), dataset, dataset_tag, store or None)
    weights = model or None
    if sft_steps > 0:
        stages["sft1"] = train_sft(stage=1, model=model or None, max_steps=sft_steps, home=home)
        stages["sft2"] = train_sft(stage=2, max_steps=sft_steps, home=home)
        weights = stages["sft2"]["final"]
    if rl_steps > 0:
        # the tiny preset when the pipeline started from the tiny model (SFT's weights of it included)
        stages["rl"] = train_rl(model=weights, max_steps=rl_steps, home=home, preset=None if model else "rl_tiny")
        weights = stages["rl"]["final"]
    if eval_tsv:
        stages["evaluate"] = evaluate(tsv=eval_tsv, home=home, backend=eval_backend, model=weights or "",
                                      response_file=eval_response_file, isolation=isolation)
    return stages
