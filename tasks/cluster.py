"""Prefect tasks of cluster runs: thin wrappers over thyme_core.cluster (Ray tasks, the store, publishing).

One Prefect task run per shard, as in a local run (same names with `-on-cluster`, the same progress bar and
artifact): each waits on its shard's Ray task, so the driver's threads are waiting, not working. They run on a
thread pool of their own, sized to keep every free slot of the cluster busy (the flow's pool is sized for this
machine's cores). Each shard task carries where S3 is as this process sees it (base/s3.Endpoint): the
workers share no environment with the driver.
"""

from __future__ import annotations

from typing import Any, Callable

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from thyme_core.agent.config import AgentConfig
from thyme_core.agent.infer import BackendSpec
from thyme_core.base.home import DataHome
from thyme_core.cluster import publish as cluster
from thyme_core.cluster import shipped, stored
from thyme_core.cluster.engine import Resources, engine
from thyme_core.eval.evaluate import EvalShard
from thyme_core.prepare.report import describe_shard
from thyme_core.prepare.shards import PrepareConfig
from thyme_core.prepare.source import ShardSpec
from thyme_core.replay import verify as replay
from thyme_core.replay.verify import describe_shard as describe_replay
from thyme_core.base.s3 import Endpoint
from thyme_core.versions.store import open_store

from tasks.progress import wait_with_progress
from tasks.retry import retry_unless_user_error

MAX_IN_FLIGHT = 256  # shard tasks waiting at once: beyond the cluster's free slots they only queue in Ray


def run_shards(shard_task: Task, calls: list[dict], desc: str, postfix: Callable[[Any], dict], address: str) -> list:
    """Submit one task run per shard on a pool sized to the cluster's CPUs (or GPUs), wait with progress."""
    slots = engine(address).resources()
    threads = max(1, min(MAX_IN_FLIGHT, len(calls), int(slots.get("CPU", 1)) + int(slots.get("GPU", 0))))
    with ThreadPoolTaskRunner(max_workers=threads) as runner:
        futures = [runner.submit(shard_task, call) for call in calls]
        return wait_with_progress(futures, desc, postfix=postfix)


@task(name="prepare-shard-on-cluster", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE, task_run_name="prepare-{spec.split}-{spec.row_start}-{spec.row_stop}")
def prepare_shard_on_cluster(spec: ShardSpec, address: str, store_uri: str, config: PrepareConfig
                             ) -> stored.StoredShard:
    out = cluster.run_shard(address, open_store(store_uri), "prepare", spec.key, stored.prepare_step,
                            (spec, store_uri, config, Endpoint.from_env()), Resources(cpus=1))
    get_run_logger().info(describe_shard(out.result) + _where(out))
    return out


@task(name="list-version-shards", cache_policy=NO_CACHE)
def list_version_shards(store_uri: str, dataset: str, split: str) -> list[tuple[str, tuple]]:
    """The prepared shards of SPLIT in a version, each with its part entries (the replay's inputs)."""
    store = open_store(store_uri)
    keys = cluster.prepared_shards(store, dataset, split)
    return [(key, cluster.shard_parts(store, dataset, "prepare", key)) for key in keys]


@task(name="replay-shard-on-cluster", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE, task_run_name="replay-{prepare_key}")
def replay_shard_on_cluster(prepare_key: str, parts: tuple, address: str, store_uri: str,
                            config: replay.ReplayConfig) -> stored.StoredShard:
    out = cluster.run_shard(address, open_store(store_uri), "replay", replay.replay_key(prepare_key, config),
                            stored.replay_step, (prepare_key, parts, store_uri, config, Endpoint.from_env()),
                            Resources(cpus=1))
    get_run_logger().info(describe_replay(out.result))
    return out


# No Prefect retries (a shard that fails on its rows fails the same way again); Ray resubmits a dead worker's.
@task(name="eval-shard-on-cluster", cache_policy=NO_CACHE, task_run_name="eval-{shard.benchmark}-{shard.start}")
def eval_shard_on_cluster(shard: EvalShard, spec: BackendSpec, config: AgentConfig, address: str, store_uri: str,
                          gpus: float, files: shipped.EvalFiles) -> stored.StoredShard:
    out = cluster.run_shard(address, open_store(store_uri), "agent", shard.key, stored.eval_step,
                            (shard, spec, config, store_uri, Endpoint.from_env(), files), Resources(cpus=1, gpus=gpus))
    r = out.result
    reused = " (already done, reused)" if r.reused else ""
    get_run_logger().info(f"shard {r.key}: {r.correct}/{r.samples} correct{reused}")
    return out


def _where(out: stored.StoredShard) -> str:
    run = getattr(out.result, "run", None)
    return f" on {run.host}" if run is not None and not out.reused else ""


@task(name="ship-eval-files", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE)
def ship_eval_files(store_uri: str, tsv: str, response_file: str, model: str = "", home_root: str = ""
                    ) -> shipped.EvalFiles:
    """The benchmark TSV, response file and model (a version, or a folder stored by content) into the store:
    the workers share no disk with us. A model folder's file hashes are remembered in the home."""
    files = shipped.ship_eval_files(open_store(store_uri), tsv, response_file, model,
                                    DataHome(home_root) if home_root else None)
    if files.model:
        get_run_logger().info(f"model {model}: version {files.model[:12]} in {store_uri}; each node pulls it once")
    return files


@task(name="publish-version", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE)
def publish_version(store_uri: str, dataset: str, shards: list[stored.StoredShard], home_root: str
                    ) -> cluster.Published:
    out = cluster.publish_shards(open_store(store_uri), dataset, shards, DataHome(home_root))
    where = "this home holds it" if out.home_updated else \
        "this home holds other work and was left as it is: `thyme data pull` it elsewhere, or `thyme data query` it"
    print(f"{out.name}/{out.tag} -> {out.manifest} ({out.files} files{', unchanged' if out.unchanged else ''}); {where}")
    return out
