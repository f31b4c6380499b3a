"""Flow `replay_sft_data`: re-execute every code block of a prepared split in the sandbox and compare.

Outputs, in the data home: shards/replay/<key>/replays.parquet (one row per code block), the catalog view
`replays` and the named queries replay_summary / replay_failures, and a markdown summary artifact.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.progress import wait_with_progress
from tasks.replay import list_prepared_shards, replay_report, replay_shard
from thyme_core.base.home import resolve_home
from thyme_core.replay.verify import ReplayConfig


# Shard tasks are threads: the work happens in sandbox interpreters, which are processes of their own.
@flow(name="replay_sft_data", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def replay_sft_data(
    split: str,
    home: str | None = None,
    min_similarity: float = 0.98,
    timeout_s: float = 20.0,
    isolation: Literal["bwrap", "none"] = "bwrap",
) -> dict:
    """Replay the prepared samples of SPLIT; returns counts (the markdown summary is an artifact)."""
    config = ReplayConfig(min_similarity=min_similarity, timeout_s=timeout_s, isolation=isolation)
    home_root = str(resolve_home(home).root)
    shards = list_prepared_shards(home_root, split)
    futures = [replay_shard.submit(shard, home_root, config) for shard in shards]
    results = wait_with_progress(futures, f"replay {split}", postfix=lambda r: {"blocks": r.blocks, "matched": r.matched})
    print(replay_report(home_root, split))
    return {"split": split, "shards": len(results), "shards_reused": sum(r.reused for r in results),
            "blocks": sum(r.blocks for r in results), "matched": sum(r.matched for r in results)}
