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
from tasks.stages import record_stage, replay_stage_key, show_asset, stage_done
from tasks.versions import checkout_dataset, push_version
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
    dataset: str = "",
    dataset_tag: str = "latest",
    store: str = "",
    cluster: str = "",
) -> dict:
    """Replay the prepared samples of SPLIT; returns counts (the markdown summary is an artifact). With
    `dataset=NAME@HASH` the replay runs on that version (checked out into this worker's home), the result is
    published as the version NAME/DATASET_TAG with its lineage, and the stage recorded under its key.
    CLUSTER (ray://HOST:PORT, default $THYME_RAY_ADDRESS): replay the split of the version DATASET (default "sft")
    in STORE there, and publish it again with the replays."""
    config = ReplayConfig(min_similarity=min_similarity, timeout_s=timeout_s, isolation=isolation)
    home_root = str(resolve_home(home).ensure().root)
    postfix = lambda r: {"blocks": r.blocks, "matched": r.matched}
    address = cluster_address(cluster)
    if address:
        store_uri, name = store or default_store_uri(), dataset.partition("@")[0] or "sft"
        inputs = list_version_shards(store_uri, name, split)
        stored = run_shards(replay_shard_on_cluster,
                            [dict(prepare_key=k, parts=p, address=address, store_uri=store_uri, config=config)
                             for k, p in inputs], f"replay {split} on {address}", lambda s: postfix(s.result), address)
        published = publish_version(store_uri, name, stored, home_root)
        results = [s.result for s in stored]
        if published.home_updated:
            print(replay_report(home_root, split))
        return {"split": split, "shards": len(results), "shards_reused": sum(r.reused for r in results),
                "blocks": sum(r.blocks for r in results), "matched": sum(r.matched for r in results),
                "version": published.manifest, "dataset": name}
    key = replay_stage_key(store, dataset, split, config) if dataset else None
    done = stage_done(store, key)
    if done:
        print(f"replay {split}: stage {key} already published {done['outputs']['dataset']}; skipped")
        return {**done["summary"], "dataset": done["outputs"]["dataset"], "skipped": True}
    if dataset:
        home_root = checkout_dataset(store, dataset, home_root)
    shards = list_prepared_shards(home_root, split)
    futures = [replay_shard.submit(shard, home_root, config) for shard in shards]
    results = wait_with_progress(futures, f"replay {split}", postfix=postfix)
    print(replay_report(home_root, split))
    summary = {"split": split, "shards": len(results), "shards_reused": sum(r.reused for r in results),
               "blocks": sum(r.blocks for r in results), "matched": sum(r.matched for r in results)}
    if dataset:
        name = dataset.partition("@")[0]
        lineage = {"stage": "replay", "stage_key": key, "inputs": {"dataset": dataset}, "config": config.fingerprint()}
        version = push_version(home_root, name, dataset_tag, store, lineage)
        spec = f"{name}@{version['manifest']}"
        show_asset(spec, "dataset", [(dataset, "dataset")], lineage)
        record_stage(store, key, "replay", {"dataset": spec}, summary=summary)
        summary["dataset"] = spec
    return summary
