"""Flow `thyme_pipeline`: the whole pipeline as one scheduled, re-runnable run.

Stages, each a subflow whose work is keyed by content so a rerun skips what has not changed:
prepare (shards keyed by input file hash, prepare config, code version) -> replay verification (keyed by
the prepare shard key, replay config, sandbox code version). Pushing a dataset version, training and
evaluation join as they land. Outputs: everything its stages write in the data home; returns the stages'
counts (how many shards each ran and reused).
"""

from __future__ import annotations

from typing import Literal

from prefect import flow

from flows.prepare_sft_data import prepare_sft_data
from flows.replay_sft_data import replay_sft_data


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
) -> dict:
    """Prepare SOURCE as SPLIT into the data home, then verify it by replaying its code."""
    stages = {"prepare": prepare_sft_data(source=source, split=split, home=home, shard_rows=shard_rows,
                                          max_pixels=max_pixels, verify=verify)}
    if replay:
        stages["replay"] = replay_sft_data(split=split, home=home, min_similarity=min_similarity,
                                           isolation=isolation)
    return stages
