"""Prefect task publishing a data home as a dataset version: a thin wrapper over thyme_core.versions."""

from __future__ import annotations

from dataclasses import asdict

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.retry import retry_unless_user_error
from thyme_core.base.home import DataHome
from thyme_core.versions.push import push
from thyme_core.versions.store import open_store


# Retries cover S3 hiccups and a lost compare-and-swap race (the retry re-plans against the new ref);
# a ThymeError (bad store URI, missing credentials) is final.
@task(name="push-version", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE)
def push_version(home_root: str, name: str, tag: str = "latest", store: str | None = None) -> dict:
    return asdict(push(DataHome(home_root), open_store(store), name, tag))
