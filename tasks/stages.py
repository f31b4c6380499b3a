"""Prefect tasks around stage results: is a stage done (thyme_core.pipeline.stages, the one check both
dispatch and in-process runs use), record a finished stage, and show a version as a Prefect asset."""

from __future__ import annotations

from prefect import task
from prefect.assets import Asset, AssetProperties
from prefect.cache_policies import NO_CACHE

from tasks.retry import retry_unless_user_error
from thyme_core.pipeline import stages
from thyme_core.versions.store import open_store


@task(name="stage-done", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=retry_unless_user_error)
def stage_done(store: str, key: str | None) -> dict | None:
    return stages.published(open_store(store or None), key) if key else None


@task(name="record-stage", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=retry_unless_user_error)
def record_stage(store: str, key: str | None, stage: str, outputs: dict, **extra) -> dict:
    from prefect.runtime import flow_run

    doc = {"stage": stage, "key": key, "outputs": outputs, "flow_run": flow_run.id, **extra}
    if key:
        doc = stages.record(open_store(store or None), key, stage, outputs, flow_run.id, **extra)
    return doc


@task(name="prepare-stage-key", cache_policy=NO_CACHE)
def prepare_stage_key(source: str, split: str, config) -> str | None:
    from thyme_core.pipeline import training

    return training.prepare_key(source, split, config)


@task(name="replay-stage-key", cache_policy=NO_CACHE)
def replay_stage_key(store: str, dataset: str, split: str, config) -> str:
    from thyme_core.pipeline import training

    return training.replay_key(open_store(store or None), dataset, split, config)


def asset_key(spec: str, kind: str) -> str:
    """NAME@SHA -> thyme://<kind>/<NAME>: one asset per dataset or model name, its versions as metadata."""
    return f"thyme://{kind}/{spec.partition('@')[0]}"


def show_asset(spec: str, kind: str, upstream: list[tuple[str, str]], lineage: dict) -> None:
    """Record the version in Prefect's asset graph: this asset materialized (a task of the calling flow run),
    its upstream assets the versions it was made from, the version and lineage as asset metadata."""
    from prefect.assets import add_asset_metadata
    from prefect.tasks import MaterializingTask

    key = asset_key(spec, kind)
    asset = Asset(key=key, properties=AssetProperties(name=spec.partition("@")[0], description=f"thyme {kind}"))

    def publish(spec: str) -> str:
        add_asset_metadata(key, {"version": spec, **{k: v for k, v in lineage.items() if v is not None}})
        return spec

    MaterializingTask(publish, assets=[asset], asset_deps=[asset_key(s, k) for s, k in upstream if s and asset_key(s, k) != key],
                      cache_policy=NO_CACHE, name=f"asset-{kind}")(spec)
