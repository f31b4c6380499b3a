"""Prefect tasks of replay verification: thin wrappers over thyme_core.replay.verify / catalog."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import publish_markdown
from thyme_core import replay
from thyme_core.base.home import DataHome
from thyme_core.replay.verify import describe_shard
from thyme_core.versions.query import version_querier
from thyme_core.versions.store import open_store


@task(name="list-prepared-shards", cache_policy=NO_CACHE)
def list_prepared_shards(home_root: str, split: str) -> list[str]:
    return replay.prepared_shards(DataHome(home_root), split)


@task(name="replay-shard", cache_policy=NO_CACHE)
def replay_shard(prepare_dir: str, home_root: str, config: replay.ReplayConfig) -> replay.ReplayShardResult:
    result = replay.replay_shard(Path(prepare_dir), DataHome(home_root), config)
    get_run_logger().info(describe_shard(result))
    return result


@task(name="replay-report", cache_policy=NO_CACHE)
def replay_report(home_root: str, split: str, results: list[replay.ReplayShardResult], store_uri: str = "",
                  version: str = "") -> str:
    """From the home's catalog, or with `version` (NAME@SHA) from that version in the store."""
    where = version_querier(open_store(store_uri), version) if version else DataHome(home_root)
    markdown = replay.summary_markdown(where, split, results)
    return publish_markdown(markdown, ("replay", split), "SFT replay verification summary")
