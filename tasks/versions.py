"""Prefect tasks publishing and checking out dataset versions: thin wrappers over thyme_core.versions."""

from __future__ import annotations

from dataclasses import asdict

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.retry import retry_unless_user_error
from thyme_core.base.home import DataHome
from thyme_core.versions.pull import checkout
from thyme_core.versions.push import push
from thyme_core.versions.store import open_store


# Retries cover S3 hiccups and a lost compare-and-swap race (the retry re-plans against the new ref);
# a ThymeError (bad store URI, missing credentials) is final.
@task(name="push-version", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE)
def push_version(home_root: str, name: str, tag: str = "latest", store: str | None = None,
                 lineage: dict | None = None) -> dict:
    if lineage is not None:
        from prefect.runtime import flow_run

        from thyme_core.pipeline.training import code_of

        lineage = {"code": code_of(lineage["stage"]), **lineage, "flow_run": flow_run.id}
    return asdict(push(DataHome(home_root), open_store(store or None), name, tag, lineage))


@task(name="checkout-dataset", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE)
def checkout_dataset(store: str, spec: str, home_root: str) -> str:
    """The home holding exactly version `spec` on this worker (pulled into its cache unless it is the home)."""
    return str(checkout(open_store(store or None), spec, DataHome(home_root))[0].root)
