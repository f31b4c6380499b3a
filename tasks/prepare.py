"""Prefect tasks of SFT data preparation: thin wrappers over thyme_core.prepare.shards / catalog."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from thyme_core import catalog, prepare
from thyme_core.prepare import hub
from thyme_core.base import workers
from thyme_core.base.home import DataHome
from thyme_core.prepare.report import PrepareReport, build_report, describe_shard
from thyme_core.prepare.source import ShardSpec
from thyme_core.versions.query import version_querier
from thyme_core.versions.store import open_store

from tasks.artifacts import publish_markdown
from tasks.retry import retry_unless_user_error

# Finished shards are skipped by thyme_core itself (their folder is the marker), which stays true when a
# home is deleted or moved; a Prefect result cache keyed on inputs would not, so none is used here.


@task(name="plan-shards", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE)
def plan_shards(source: str, split: str, home_root: str, config: prepare.PrepareConfig) -> list[ShardSpec]:
    return prepare.plan(source, split, config, DataHome(home_root))


@task(name="resolve-hub-source", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE)
def resolve_hub_source(uri: str, home_root: str) -> hub.HubSnapshot:
    """hf://datasets/...: the commit the revision points at now and its data files."""
    snapshot = prepare.resolve_hub(uri, DataHome(home_root))
    print(f"{uri}: commit {snapshot.sha}, {len(snapshot.files)} data files")
    return snapshot


@task(name="plan-hub-file", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE, task_run_name="plan-{filename}")
def plan_hub_file(snapshot: hub.HubSnapshot, filename: str, split: str, config: prepare.PrepareConfig
                  ) -> list[ShardSpec]:
    return prepare.plan_hub_file(snapshot, filename, split, config)


@task(name="plan-hub-ranges", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE)
def plan_hub_ranges(snapshot: hub.HubSnapshot, split: str, config: prepare.PrepareConfig) -> list[ShardSpec]:
    """The snapshot's shards for workers that read the Hub by range (a cluster): footers and line ends only."""
    return prepare.plan_hub_ranges(snapshot, split, config)


@task(name="prepare-shard", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE,
      task_run_name="prepare-{spec.split}-{spec.row_start}-{spec.row_stop}")
def prepare_shard(spec: ShardSpec, home_root: str, config: prepare.PrepareConfig) -> prepare.ShardResult:
    # a finished shard is answered here, so a fully skipped rerun never starts the worker pool
    result = prepare.finished(spec, DataHome(home_root)) or workers.run(prepare.prepare_shard, spec,
                                                                        DataHome(home_root), config)
    get_run_logger().info(describe_shard(result))
    return result


@task(name="catalog-report", cache_policy=NO_CACHE)
def catalog_report(home_root: str, split: str, results: list[prepare.ShardResult], wall_seconds: float,
                   store_uri: str = "", version: str = "") -> PrepareReport:
    """The run's report from the home's catalog, or with `version` (NAME@SHA) from that version in the store."""
    if version:
        return build_report(version_querier(open_store(store_uri), version), split, results, wall_seconds)
    home = DataHome(home_root)
    catalog.publish(home)
    return build_report(home, split, results, wall_seconds)


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(report: PrepareReport) -> str:
    return publish_markdown(report.markdown(), ("prepare", report.split), "SFT data preparation summary")
