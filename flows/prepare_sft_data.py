"""Flow `prepare_sft_data`: Thyme SFT (and RL-form) source files -> a clean, deduplicated, path-correct catalog.

Outputs, in the data home (an s3:// source is read in place, by range; an hf:// source goes to the HF cache, one
file at a time, or on a cluster is read by range by the workers): images/ (content-addressed store),
shards/prepare/<key>/*.parquet (samples with image, text-only samples, images, rejects, shard summary),
catalog.duckdb (views `sft_samples`, `images`, `rejects`, `prepare_shards`, and `rl_samples` for files in the
released RL form: messages, images, solution, question; the schema is detected per file), and a markdown summary
artifact.
With `cluster` (or $THYME_RAY_ADDRESS) the shards run as Ray tasks that write straight into the store, and the
flow ends by publishing the dataset version DATASET (the manifest a local run's `thyme data push` would make)
and pulling it into the home when that loses nothing (thyme_core/cluster/).
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from tasks import user_errors
from tasks.cluster import prepare_shard_on_cluster, publish_version, run_shards
from tasks.prepare import (catalog_report, plan_hub_file, plan_hub_ranges, plan_shards, prepare_shard,
                           publish_report, resolve_hub_source)
from tasks.run_plans import record_prepare_plan, record_run_end, wait_recording_failure
from tasks.stages import prepare_stage_key, record_stage, show_asset, stage_done
from tasks.versions import push_version
from thyme_core.base.home import resolve_home
from thyme_core.base.names import check_name
from thyme_core.cluster.engine import address as cluster_address
from thyme_core.versions.store import default_store_uri
from thyme_core.prepare import hub
from thyme_core.prepare.shards import PrepareConfig
from thyme_core.base.workers import default_workers

user_errors.install()


# Tasks are threads that hand their shard to thyme_core's warm process pool (workers.py): the decoding
# runs on every core without each worker importing Prefect.
@flow(name="prepare_sft_data", task_runner=ThreadPoolTaskRunner(max_workers=default_workers()), log_prints=True)
def prepare_sft_data(
    source: str,
    split: str,
    home: str | None = None,
    shard_rows: Annotated[int, Field(ge=1)] = 1000,
    max_pixels: Annotated[int, Field(ge=1)] = 100_000_000,
    verify: Literal["structure", "decode"] = "structure",
    dataset: str = "",
    dataset_tag: str = "latest",
    store: str = "",
    cluster: str = "",
) -> dict:
    """Prepare one split of Thyme SFT (or RL-form) data into the data home's catalog.

    With `dataset`, the home's catalog is then published as the version DATASET/DATASET_TAG in `store` (its
    lineage recorded, a Prefect asset) and the stage's result recorded under its key: a recorded stage is
    skipped. With `cluster` the shards run there, writing straight into `store`, and DATASET (default "sft")
    is published from their parts.

    Args:
        source: A Thyme SFT (image, question, response) or RL-form (messages, images, solution, question)
            .parquet or .jsonl file, a folder of them, s3://bucket/prefix (read in place: each shard reads
            only its row groups, by range, also on a cluster; shards of unchanged objects are skipped), or a
            Hub dataset hf://datasets/OWNER/NAME[@REVISION][/PATH] (fetched file by file while earlier files'
            shards run; with `cluster`, read by range by the workers at the commit the revision resolved to).
            Paths are read on the machine of the worker.
        split: The split the samples are filed under, e.g. wo_thinking_thyme_single_round, 2round,
            computation (letters, digits, '.', '_', '-').
        home: The data home folder on the worker's machine (images, shards, catalog.duckdb). Empty: the
            worker's THYME_HOME, which `thyme serve --home DIR` sets, else ~/.local/share/thyme.
        shard_rows: The most source rows per shard (one task each, the unit a rerun skips). Shards hold whole
            Parquet row groups, so a shard can be larger when row groups are; a file of fewer than
            16 x shard_rows rows is cut finer so that every core stays busy to the end.
        max_pixels: Reject images with more pixels than this (decompression bombs).
        verify: How hard to check each JPEG: structure (header and end marker, fast) or decode (a scaled
            decode of every image).
        dataset: Publish the prepared catalog as a version of this dataset in `store`. Empty: no version
            (with `cluster`: "sft").
        dataset_tag: The tag the published version gets (moved if it exists).
        store: The version store: a folder, file:///path or s3://bucket/prefix. Empty: the worker's
            THYME_STORE, else ~/.local/share/thyme-store.
        cluster: A Ray cluster (ray://HOST:PORT) to run the shards on, writing straight into `store`. Empty:
            $THYME_RAY_ADDRESS, else this machine.
    """
    started = time.perf_counter()
    check_name("split", split)
    if dataset:
        check_name("dataset", dataset)
        check_name("dataset_tag", dataset_tag)
    config = PrepareConfig(shard_rows=shard_rows, max_pixels=max_pixels, verify=verify)
    key = prepare_stage_key(source, split, config) if dataset and not hub.is_hub(source) else None
    done = stage_done(store, key)
    if done:
        line = f"prepare {split}: stage {key} already published {done['outputs']['dataset']}; skipped"
        get_run_logger().info(line)
        return {**done["summary"], "dataset": done["outputs"]["dataset"], "skipped": True, "report": line}
    home_root = str(resolve_home(home).ensure().root)
    address = cluster_address(cluster)
    dataset = dataset or ("sft" if address else "")
    postfix = lambda r: {"samples": r.summary.samples_image + r.summary.samples_text + r.summary.samples_rl,
                         "rejects": r.summary.rejects}
    on_cluster, in_place = {}, {}
    if address:  # a hub source is planned by range: the workers read their shards from the Hub, at one commit
        specs = plan_hub_ranges(resolve_hub_source(source, home_root), split, config) if hub.is_hub(source) \
            else plan_shards(source, split, home_root, config)
        store_uri = store or default_store_uri()
        shards = run_shards(prepare_shard_on_cluster,
                            [dict(spec=s, address=address, store_uri=store_uri, config=config) for s in specs],
                            f"prepare {split} on {address}", lambda s: postfix(s.result), address)
        published = publish_version(store_uri, dataset, shards, home_root)
        results, on_cluster = [s.result for s in shards], {"version": published.manifest, "dataset": dataset}
        if not published.home_updated:  # the report comes from the version, queried where it lies
            in_place = dict(store_uri=store_uri, version=f"{dataset}@{published.manifest}")
    else:
        if hub.is_hub(source):
            snapshot = resolve_hub_source(source, home_root)
            specs, futures = [], []
            for name in snapshot.files:  # each file's shards start before the next file is fetched
                file_specs = plan_hub_file(snapshot, name, split, config)
                specs += file_specs
                futures += [prepare_shard.submit(spec, home_root, config) for spec in file_specs]
        else:
            specs = plan_shards(source, split, home_root, config)
            futures = [prepare_shard.submit(spec, home_root, config) for spec in specs]
        run_key = record_prepare_plan(home_root, source, split, specs, config)
        results = wait_recording_failure(futures, f"prepare {split}", postfix, home_root, "prepare", run_key)
    report = catalog_report(home_root, split, results, time.perf_counter() - started, **in_place)
    markdown = publish_report(report)
    get_run_logger().info(report.headline())
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
    if not address:
        record_run_end(home_root, "prepare", run_key, {"dataset": summary["dataset"]} if dataset else {})
    return {**summary, "images_per_second": round(report.images_per_second, 1), **on_cluster, "report": markdown}
