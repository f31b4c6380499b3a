"""Prefect tasks recording what a prepare, replay or evaluation run planned and how it ended, in the home
(thyme_core.runs.plans): what the viewer's runs page reads."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.progress import wait_with_progress
from thyme_core.base.home import DataHome
from thyme_core.eval import benchmarks
from thyme_core.replay import verify
from thyme_core.runs import plans


@task(name="record-prepare-plan", cache_policy=NO_CACHE)
def record_prepare_plan(home_root: str, source: str, split: str, specs: list, config) -> str:
    return plans.start_prepare(DataHome(home_root), source, split, specs, config)


@task(name="record-replay-plan", cache_policy=NO_CACHE)
def record_replay_plan(home_root: str, split: str, dataset: str, prepare_dirs: list[str],
                       config: verify.ReplayConfig) -> str:
    return plans.start_replay(DataHome(home_root), split, dataset, prepare_dirs, verify.replay_key, config)


@task(name="record-eval-plan", cache_policy=NO_CACHE)
def record_eval_plan(home_root: str, tsv: str, shards: list, spec, config, scoring) -> str | None:
    if not shards:
        return None
    return plans.start_eval(DataHome(home_root), tsv, benchmarks.file_sha256(tsv), shards, spec, config, scoring)


@task(name="record-run-end", cache_policy=NO_CACHE)
def record_run_end(home_root: str, kind: str, key: str | None, outputs: dict | None = None, error: str = "") -> None:
    if key:
        plans.finish(DataHome(home_root), kind, key, outputs, error)


def wait_recording_failure(futures: list, desc: str, postfix, home_root: str, kind: str, key: str | None) -> list:
    """wait_with_progress; a failure is first recorded as the run's end (FAILED, for the viewer), then raised."""
    try:
        return wait_with_progress(futures, desc, postfix=postfix)
    except Exception as exc:
        record_run_end(home_root, kind, key, error=f"{type(exc).__name__}: {exc}")
        raise
