"""Flow `prepare_sft_data`: Thyme SFT (and RL-form) source files -> a clean, deduplicated, path-correct catalog.

Outputs, in the data home: sources/s3/... (the mirror of an s3:// source), images/ (content-addressed store), shards/prepare/<key>/*.parquet (samples
with image, text-only samples, images, rejects, shard summary), catalog.duckdb (views `sft_samples`,
`images`, `rejects`, `prepare_shards`, and `rl_samples` for files in the released RL form: messages, images,
solution, question; the schema is detected per file), and a markdown summary artifact.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from tasks import user_errors
from tasks.prepare import catalog_report, plan_shards, prepare_shard, publish_report, sync_source
from tasks.progress import wait_with_progress
from thyme_core.base.home import resolve_home
from thyme_core.base.names import check_name
from thyme_core.prepare.shards import PrepareConfig
from thyme_core.prepare.s3_mirror import is_remote
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
) -> dict:
    """Prepare one split of Thyme SFT (or RL-form) data into the data home's catalog.

    Args:
        source: A Thyme SFT (image, question, response) or RL-form (messages, images, solution, question)
            .parquet or .jsonl file, a folder of them, or s3://bucket/prefix (mirrored into the home first:
            only new or changed objects are downloaded). Paths are read on the machine of the worker.
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
    """
    started = time.perf_counter()
    check_name("split", split)
    config = PrepareConfig(shard_rows=shard_rows, max_pixels=max_pixels, verify=verify)
    home_root = str(resolve_home(home).ensure().root)
    if is_remote(source):
        source = sync_source(source, home_root)
    specs = plan_shards(source, split, home_root, config)
    futures = [prepare_shard.submit(spec, home_root, config) for spec in specs]
    results = wait_with_progress(
        futures, f"prepare {split}",
        postfix=lambda r: {"samples": r.summary.samples_image + r.summary.samples_text + r.summary.samples_rl,
                           "rejects": r.summary.rejects},
    )
    report = catalog_report(home_root, split, results, time.perf_counter() - started)
    markdown = publish_report(report)
    get_run_logger().info(report.headline())
    return {"split": split, "shards": len(specs), "shards_reused": report.shards_reused,
            "images_per_second": round(report.images_per_second, 1),
            "samples": report.samples_image + report.samples_text + report.samples_rl,
            "rl_samples": report.samples_rl, "rejects": report.rejects, "report": markdown}
