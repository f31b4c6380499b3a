"""Flow `prepare_sft_data`: Thyme SFT (and RL-form) source files -> a clean, deduplicated, path-correct catalog.

Outputs, in the data home: sources/s3/... (the mirror of an s3:// source; an hf:// source goes to the HF cache, one
file at a time), images/ (content-addressed store), shards/prepare/<key>/*.parquet (samples
with image, text-only samples, images, rejects, shard summary), catalog.duckdb (views `sft_samples`,
`images`, `rejects`, `prepare_shards`, and `rl_samples` for files in the released RL form: messages, images,
solution, question; the schema is detected per file), and a markdown summary artifact.
With `cluster` (or $THYME_RAY_ADDRESS) the shards run as Ray tasks that write straight into the store, and the
flow ends by publishing the dataset version DATASET (the manifest a local run's `thyme data push` would make)
and pulling it into the home when that loses nothing (thyme_core/cluster/).
"""

from __future__ import annotations

import time
from typing import Literal

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.cluster import prepare_shard_on_cluster, publish_version, run_shards
from tasks.prepare import (catalog_report, plan_hub_file, plan_shards, prepare_shard, publish_report,
                           resolve_hub_source, sync_source)
from tasks.progress import wait_with_progress
from tasks.stages import prepare_stage_key, record_stage, show_asset, stage_done
from tasks.versions import push_version
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import resolve_home
from thyme_core.cluster.engine import address as cluster_address
from thyme_core.versions.store import default_store_uri
from thyme_core.prepare import hub
from thyme_core.prepare.shards import PrepareConfig
from thyme_core.prepare.s3_mirror import is_remote
from thyme_core.base.workers import default_workers


# Tasks are threads that hand their shard to thyme_core's warm process pool (workers.py): the decoding
# runs on every core without each worker importing Prefect.
@flow(name="prepare_sft_data", task_runner=ThreadPoolTaskRunner(max_workers=default_workers()), log_prints=True)
def prepare_sft_data(
    source: str,
    split: str,
    home: str | None = None,
    shard_rows: int = 1000,
    max_pixels: int = 100_000_000,
    verify: Literal["structure", "decode"] = "structure",
    dataset: str = "",
    dataset_tag: str = "latest",
    store: str = "",
    cluster: str = "",
) -> dict:
    """Prepare one split from SOURCE (a Parquet/JSONL file, a folder of them, an s3://bucket/prefix of them,
    mirrored into the home first: only new or changed objects are downloaded, or a Hub dataset
    hf://datasets/OWNER/NAME[@REVISION][/PATH], fetched file by file while earlier files' shards run) into the
    data home. With `dataset`, the home's catalog is then published as the version DATASET/DATASET_TAG in
    `store` (its lineage recorded, a Prefect asset) and the stage's result recorded under its key: a recorded
    stage is skipped. CLUSTER (ray://HOST:PORT, default $THYME_RAY_ADDRESS): run the shards there, writing
    straight into `store`, and publish DATASET (default "sft") from their parts."""
    started = time.perf_counter()
    config = PrepareConfig(shard_rows=shard_rows, max_pixels=max_pixels, verify=verify)
    key = prepare_stage_key(source, split, config) if dataset and not hub.is_hub(source) else None
    done = stage_done(store, key)
    if done:
        print(f"prepare {split}: stage {key} already published {done['outputs']['dataset']}; skipped")
        return {**done["summary"], "dataset": done["outputs"]["dataset"], "skipped": True}
    home_root = str(resolve_home(home).ensure().root)
    address = cluster_address(cluster)
    dataset = dataset or ("sft" if address else "")
    if address and (is_remote(source) or hub.is_hub(source)):
        raise ThymeError("a cluster prepare reads the source where the workers see it: give a path every worker "
                         "can read (s3:// and hf:// sources are read by the local prepare only, for now)")
    postfix = lambda r: {"samples": r.summary.samples_image + r.summary.samples_text + r.summary.samples_rl,
                         "rejects": r.summary.rejects}
    on_cluster = {}
    if address:
        specs = plan_shards(source, split, home_root, config)
        store_uri = store or default_store_uri()
        shards = run_shards(prepare_shard_on_cluster,
                            [dict(spec=s, address=address, store_uri=store_uri, config=config) for s in specs],
                            f"prepare {split} on {address}", lambda s: postfix(s.result), address)
        published = publish_version(store_uri, dataset, shards, home_root)
        results, on_cluster = [s.result for s in shards], {"version": published.manifest, "dataset": dataset}
        if not published.home_updated:
            return {"split": split, "shards": len(specs), "shards_reused": sum(s.reused for s in shards), **on_cluster}
    else:
        if hub.is_hub(source):
            snapshot = resolve_hub_source(source, home_root)
            specs, futures = [], []
            for name in snapshot.files:  # each file's shards start before the next file is fetched
                file_specs = plan_hub_file(snapshot, name, split, config)
                specs += file_specs
                futures += [prepare_shard.submit(spec, home_root, config) for spec in file_specs]
        else:
            if is_remote(source):
                source = sync_source(source, home_root)
            specs = plan_shards(source, split, home_root, config)
            futures = [prepare_shard.submit(spec, home_root, config) for spec in specs]
        results = wait_with_progress(futures, f"prepare {split}", postfix=postfix)
    report = catalog_report(home_root, split, results, time.perf_counter() - started)
    print(publish_report(report))
    summary = {"split": split, "shards": len(specs), "shards_reused": report.shards_reused,
               "samples": report.samples_image + report.samples_text + report.samples_rl,
               "rl_samples": report.samples_rl, "rejects": report.rejects}
    if dataset and not address:  # a cluster run has published its version already
        lineage = {"stage": "prepare", "stage_key": key, "inputs": {"source": source, "split": split},
                   "config": config.fingerprint()}
        version = push_version(home_root, dataset, dataset_tag, store, lineage)
        spec = f"{dataset}@{version['manifest']}"
        show_asset(spec, "dataset", [], lineage)
        record_stage(store, key, "prepare", {"dataset": spec}, summary=summary)
        summary["dataset"] = spec
    return {**summary, "images_per_second": round(report.images_per_second, 1), **on_cluster}
