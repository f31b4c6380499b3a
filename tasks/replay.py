"""Prefect tasks of replay verification: thin wrappers over thyme_core.replay.verify / catalog."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from thyme_core import replay
from thyme_core.base.home import DataHome


@task(name="list-prepared-shards", cache_policy=NO_CACHE)
def list_prepared_shards(home_root: str, split: str) -> list[str]:
    return replay.prepared_shards(DataHome(home_root), split)


@task(name="replay-shard", cache_policy=NO_CACHE)
def replay_shard(prepare_dir: str, home_root: str, config: replay.ReplayConfig) -> replay.ReplayShardResult:
    return replay.replay_shard(Path(prepare_dir), DataHome(home_root), config)


@task(name="replay-report", cache_policy=NO_CACHE)
def replay_report(home_root: str, split: str) -> str:
    markdown = replay.summary_markdown(DataHome(home_root), split)
    create_markdown_artifact(markdown, key=f"replay-{split.replace('_', '-').lower()}",
                             description="SFT replay verification summary")
    return markdown
