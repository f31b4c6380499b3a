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

from typing import Literal

from prefect import flow

from flows.evaluate import evaluate
from flows.prepare_sft_data import prepare_sft_data
from flows.replay_sft_data import replay_sft_data
from flows.train_rl import train_rl
from flows.train_sft import train_sft
from tasks.versions import push_version


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
    dataset: str = "",
    dataset_tag: str = "latest",
    store: str = "",
    sft_steps: int = 0,
    rl_steps: int = 0,
    model: str = "",
    eval_tsv: str = "",
    eval_backend: Literal["transformers", "vllm", "openai", "scripted"] = "transformers",
    eval_response_file: str = "",
) -> dict:
    """Prepare SOURCE as SPLIT, verify it, and optionally publish, train and evaluate."""
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
