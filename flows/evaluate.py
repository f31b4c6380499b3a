"""Flow `evaluate`: a VLMEvalKit TSV benchmark through the agent loop, scored by benchmark and category.

Outputs, in the data home: shards/agent/eval-<key>/ per shard (trajectories, turns, executions,
eval_results), the catalog views `trajectories`, `turns`, `executions`, `eval_results`, and a markdown
accuracy report (printed and published as an artifact). Finished shards are skipped on a re-run.
`protocol` picks the scoring: `thyme` (ours) or `vlmevalkit` (its rules, its judge prompt through the judge at
`judge_url`, and `retries` of trajectories that end without an answer), recorded with every result.
With `cluster` (or $THYME_RAY_ADDRESS) each shard is a Ray task holding `gpus_per_shard` GPUs (one backend per
GPU), written straight into STORE; the flow publishes the results as the dataset version DATASET.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.cluster import eval_shard_on_cluster, publish_version, run_shards
from tasks.evaluate import eval_report, eval_shard, eval_stage_key, plan_eval_shards, resolve_model_version
from tasks.stages import record_stage, stage_done
from tasks.progress import wait_with_progress
from thyme_core.agent.config import from_settings
from thyme_core.cluster.engine import address as cluster_address
from thyme_core.versions.store import default_store_uri
from thyme_core.agent.infer import BackendSpec
from thyme_core.base.home import resolve_home
from thyme_core.eval.evaluate import EvalScoring


# Shards run one at a time in this process: the model is loaded once and is the bottleneck; parallel
# sandboxes come from running several trajectories' code, not several shards.
@flow(name="evaluate", task_runner=ThreadPoolTaskRunner(max_workers=1), log_prints=True)
def evaluate(
    tsv: str,
    home: str | None = None,
    backend: Literal["transformers", "vllm", "openai", "scripted"] = "transformers",
    model: str = "",
    response_file: str = "",
    served_model: str = "",
    device: str = "cpu",
    shard_rows: int = 32,
    run_id: str = "",
    max_rounds: int = 5,
    max_length: int = 8192,
    max_new_tokens: int = 2048,
    text_temperature: float = 0.0,
    code_temperature: float = 0.0,
    system_prompt: str = "",
    isolation: Literal["bwrap", "none"] = "bwrap",
    protocol: Literal["thyme", "vlmevalkit"] = "thyme",
    retries: int = 0,
    judge_url: str = "",
    judge_model: str = "",
    agent_settings: dict[str, Any] | None = None,
    store: str = "",
    cluster: str = "",
    dataset: str = "eval",
    gpus_per_shard: float = 1.0,
) -> dict:
    """Evaluate BENCH.tsv; returns the run id and counts (the report is an artifact).

    `agent_settings`: any other agent loop setting by its AgentConfig name (e.g. {"top_p": 0.9, "timeout_s":
    20}); it overrides the named parameters above. A wrong name fails the run with the valid names.
    With `store` (what the pipeline dispatches), `model` may be a model version NAME@HASH (pulled into this
    worker's home) and the result is recorded in the store under the stage's key; a recorded stage is not
    run again. CLUSTER (ray://HOST:PORT, default $THYME_RAY_ADDRESS): run the shards there, GPUS_PER_SHARD
    each, and publish their trajectories as the dataset version DATASET in STORE.
    """
    key = None
    if store:
        params = {k: v for k, v in locals().items() if k not in ("home", "store", "model", "tsv", "key", "cluster")}
        key = eval_stage_key(store, tsv, model, params)
        done = stage_done(store, key)
        if done:
            print(f"evaluate: stage {key} already recorded; skipped")
            return {**done["summary"], "skipped": True}
        model = resolve_model_version(model, str(resolve_home(home).ensure().root), store)
    spec = BackendSpec(backend, model, response_file, device, served_model)
    config = from_settings(dict(max_rounds=max_rounds, max_length=max_length, max_new_tokens=max_new_tokens,
                                text_temperature=text_temperature, code_temperature=code_temperature,
                                system_prompt=system_prompt, isolation=isolation) | (agent_settings or {}))
    scoring = EvalScoring(protocol=protocol, retries=retries, judge_url=judge_url, judge_model=judge_model)
    home_root = str(resolve_home(home).ensure().root)
    shards = plan_eval_shards(tsv, spec, config, shard_rows, run_id, scoring)
    address, version, home_updated = cluster_address(cluster), {}, True
    if address:  # (the cluster path scores with our protocol; vlmevalkit scoring runs locally)
        store_uri = store or default_store_uri()
        stored = run_shards(eval_shard_on_cluster,
                            [dict(shard=s, spec=spec, config=config, address=address, store_uri=store_uri,
                                  gpus=gpus_per_shard) for s in shards],
                            f"evaluate {tsv} on {address}", lambda s: {"correct": s.result.correct}, address)
        published = publish_version(store_uri, dataset, stored, home_root)
        results, version = [s.result for s in stored], {"version": published.manifest, "dataset": dataset}
        home_updated = published.home_updated
    else:
        futures = [eval_shard.submit(s, home_root, spec, config, scoring) for s in shards]
        results = wait_with_progress(futures, f"evaluate {tsv}", postfix=lambda r: {"correct": r.correct})
    run = shards[0].run_id if shards else run_id
    if home_updated:
        print(eval_report(home_root, run))
    summary = {"run_id": run, "protocol": protocol, "shards": len(results),
               "shards_reused": sum(r.reused for r in results),
               "samples": sum(r.samples for r in results), "correct": sum(r.correct for r in results)}
    if store and not address:
        record_stage(store, key, "evaluate", {}, summary=summary)
    return {**summary, **version}
