"""Flow `replay_sft_data`: re-execute every code block of a prepared split in the sandbox and compare.

Outputs, in the data home: shards/replay/<key>/replays.parquet (one row per code block), the catalog view
`replays` and the named queries replay_summary / replay_failures, and a markdown summary artifact.
With `cluster` (or $THYME_RAY_ADDRESS) the input is the dataset version DATASET in STORE (no shared disk: each
Ray task fetches its shard's parts and images from the store) and the output a new version of DATASET.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.cluster import list_version_shards, publish_version, replay_shard_on_cluster, run_shards
from tasks.progress import wait_with_progress
from tasks.replay import list_prepared_shards, replay_report, replay_shard
from thyme_core.base.home import resolve_home
from thyme_core.cluster.engine import address as cluster_address
from thyme_core.versions.store import default_store_uri
from thyme_core.replay.verify import ReplayConfig


# Shard tasks are threads: the work happens in sandbox interpreters, which are processes of their own.
@flow(name="replay_sft_data", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def replay_sft_data(
    split: str,
    home: str | None = None,
    min_similarity: float = 0.98,
    timeout_s: float = 20.0,
    isolation: Literal["bwrap", "none"] = "bwrap",
    cluster: str = "",
    store: str = "",
    dataset: str = "sft",
) -> dict:
    """Replay the prepared samples of SPLIT; returns counts (the markdown summary is an artifact). CLUSTER
    (ray://HOST:PORT, default $THYME_RAY_ADDRESS): replay the split of DATASET in STORE there, publish DATASET."""
    config = ReplayConfig(min_similarity=min_similarity, timeout_s=timeout_s, isolation=isolation)
    home_root = str(resolve_home(home).root)
    postfix = lambda r: {"blocks": r.blocks, "matched": r.matched}
    address, version, home_updated = cluster_address(cluster), {}, True
    if address:
        store_uri = store or default_store_uri()
        inputs = list_version_shards(store_uri, dataset, split)
        stored = run_shards(replay_shard_on_cluster,
                            [dict(prepare_key=k, parts=p, address=address, store_uri=store_uri, config=config)
                             for k, p in inputs], f"replay {split} on {address}", lambda s: postfix(s.result), address)
        published = publish_version(store_uri, dataset, stored, home_root)
        results, version = [s.result for s in stored], {"version": published.manifest, "dataset": dataset}
        home_updated = published.home_updated
    else:
        shards = list_prepared_shards(home_root, split)
        futures = [replay_shard.submit(shard, home_root, config) for shard in shards]
        results = wait_with_progress(futures, f"replay {split}", postfix=postfix)
    if home_updated:
        print(replay_report(home_root, split))
    return {"split": split, "shards": len(results), "shards_reused": sum(r.reused for r in results),
            "blocks": sum(r.blocks for r in results), "matched": sum(r.matched for r in results), **version}
