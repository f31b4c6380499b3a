"""Flow `replay_sft_data`: re-execute every code block of a prepared split in the sandbox and compare.

Outputs, in the data home: shards/replay/<key>/replays.parquet (one row per code block), the catalog view
`replays` and the named queries replay_summary / replay_failures, and a markdown summary artifact.
With `cluster` (or $THYME_RAY_ADDRESS) the input is the dataset version DATASET in STORE (no shared disk: each
Ray task fetches its shard's parts and images from the store) and the output a new version of DATASET.
"""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from tasks import user_errors
from tasks.cluster import list_version_shards, publish_version, replay_shard_on_cluster, run_shards
from tasks.replay import list_prepared_shards, replay_report, replay_shard
from tasks.run_plans import record_replay_plan, record_run_end, wait_recording_failure
from tasks.stages import record_stage, replay_stage_key, show_asset, stage_done
from tasks.versions import checkout_dataset, push_version
from thyme_core.base.home import resolve_home
from thyme_core.base.names import check_name
from thyme_core.cluster.engine import address as cluster_address
from thyme_core.versions.store import default_store_uri
from thyme_core.replay.verify import ReplayConfig

user_errors.install()


# Shard tasks are threads: the work happens in sandbox interpreters, which are processes of their own.
@flow(name="replay_sft_data", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def replay_sft_data(
    split: str,
    home: str | None = None,
    min_similarity: Annotated[float, Field(ge=0.0, le=1.0)] = 0.98,
    timeout_s: Annotated[float, Field(gt=0.0)] = 20.0,
    isolation: Literal["bwrap", "none"] = "bwrap",
    dataset: str = "",
    dataset_tag: str = "latest",
    store: str = "",
    cluster: str = "",
) -> dict:
    """Re-run every code block of a prepared split in the sandbox and compare with the recorded outputs.

    Returns counts and the markdown summary (also an artifact). With `dataset=NAME@HASH` the replay runs on
    that version (checked out into this worker's home), the result is published as the version
    NAME/DATASET_TAG with its lineage, and the stage recorded under its key. With `cluster` the split of the
    version DATASET (default "sft") in STORE is replayed there and published again with the replays.

    Args:
        split: The prepared split to replay (as given to prepare_sft_data).
        home: The data home folder on the worker's machine that holds the prepared split. Empty: the
            worker's THYME_HOME, which `thyme serve --home DIR` sets, else ~/.local/share/thyme.
        min_similarity: Pixel similarity (0 to 1) from which an output image counts as the recorded one.
            Changing it replays every shard again under a new key.
        timeout_s: Wall-clock seconds allowed to each code block.
        isolation: bwrap runs the code in a bubblewrap sandbox (no network, read-only files); none runs it
            unisolated, for trusted data only.
        dataset: A dataset version NAME@HASH to replay (checked out into the home first) and publish again
            with the replays. Empty: the home's prepared split, nothing published (with `cluster`: "sft").
        dataset_tag: The tag the published version gets (moved if it exists).
        store: The version store: a folder, file:///path or s3://bucket/prefix. Empty: the worker's
            THYME_STORE, else ~/.local/share/thyme-store.
        cluster: A Ray cluster (ray://HOST:PORT) to replay on, each task fetching its shard from `store`.
            Empty: $THYME_RAY_ADDRESS, else this machine.
    """
    check_name("split", split)
    if dataset:
        check_name("dataset", dataset.partition("@")[0])
        check_name("dataset_tag", dataset_tag)
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
        in_place = {} if published.home_updated else dict(store_uri=store_uri, version=f"{name}@{published.manifest}")
        markdown = replay_report(home_root, split, results, **in_place)
        out = {"split": split, "shards": len(results), "shards_reused": sum(r.reused for r in results),
               "blocks": sum(r.blocks for r in results), "matched": sum(r.matched for r in results)}
        _log_summary(out)
        return {**out, "version": published.manifest, "dataset": name, "report": markdown}
    key = replay_stage_key(store, dataset, split, config) if dataset else None
    done = stage_done(store, key)
    if done:
        line = f"replay {split}: stage {key} already published {done['outputs']['dataset']}; skipped"
        get_run_logger().info(line)
        return {**done["summary"], "dataset": done["outputs"]["dataset"], "skipped": True, "report": line}
    if dataset:
        home_root = checkout_dataset(store, dataset, home_root)
    shards = list_prepared_shards(home_root, split)
    futures = [replay_shard.submit(shard, home_root, config) for shard in shards]
    run_key = record_replay_plan(home_root, split, dataset, shards, config)
    results = wait_recording_failure(futures, f"replay {split}", postfix, home_root, "replay", run_key)
    markdown = replay_report(home_root, split, results)
    summary = {"split": split, "shards": len(results), "shards_reused": sum(r.reused for r in results),
               "blocks": sum(r.blocks for r in results), "matched": sum(r.matched for r in results)}
    _log_summary(summary)
    if dataset:
        name = dataset.partition("@")[0]
        lineage = {"stage": "replay", "stage_key": key, "inputs": {"dataset": dataset}, "config": config.fingerprint()}
        version = push_version(home_root, name, dataset_tag, store, lineage)
        spec = f"{name}@{version['manifest']}"
        show_asset(spec, "dataset", [(dataset, "dataset")], lineage)
        record_stage(store, key, "replay", {"dataset": spec}, summary=summary)
        summary["dataset"] = spec
    record_run_end(home_root, "replay", run_key, {"dataset": summary["dataset"]} if dataset else {})
    return {**summary, "report": markdown}


def _log_summary(out: dict) -> None:
    get_run_logger().info(f"replay {out['split']}: {out['shards'] - out['shards_reused']} shards replayed, "
                          f"{out['shards_reused']} reused; {out['matched']}/{out['blocks']} code blocks reproduced")
