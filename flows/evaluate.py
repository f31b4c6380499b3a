"""Flow `evaluate`: a VLMEvalKit TSV benchmark through the agent loop, scored by benchmark and category.

Outputs, in the data home: shards/agent/eval-<key>/ per shard (trajectories, turns, executions,
eval_results), the catalog views `trajectories`, `turns`, `executions`, `eval_results`, and a markdown
accuracy report (a markdown artifact, and printed by `thyme eval`). Finished shards are skipped on a re-run.
`protocol` picks the scoring: `thyme` (ours) or `vlmevalkit` (its rules, its judge prompt through the judge at
`judge_url`, and `retries` of trajectories that end without an answer), recorded with every result.
With `cluster` (or $THYME_RAY_ADDRESS) each shard is a Ray task holding `gpus_per_shard` GPUs (one backend per
GPU), written straight into STORE; the benchmark TSV, the response file and the model (a version NAME@HASH, or
a folder here stored by content) go to the workers through STORE (no shared disk); the flow publishes the results as the dataset version DATASET.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from tasks import user_errors

from tasks.cluster import eval_shard_on_cluster, publish_version, run_shards, ship_eval_files
from tasks.evaluate import eval_report, eval_shard, eval_stage_key, plan_eval_shards, resolve_model_version
from tasks.run_plans import record_eval_plan, record_run_end, wait_recording_failure
from tasks.stages import record_stage, stage_done
from thyme_core.agent.config import from_settings
from thyme_core.cluster.engine import address as cluster_address
from thyme_core.cluster.shipped import for_workers
from thyme_core.versions.store import default_store_uri
from thyme_core.agent.infer import BackendSpec
from thyme_core.base.home import resolve_home
from thyme_core.eval.evaluate import EvalScoring

user_errors.install()

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
    shard_rows: Annotated[int, Field(ge=1)] = 32,
    run_id: str = "",
    max_rounds: Annotated[int, Field(ge=0)] = 5,
    max_length: Annotated[int, Field(ge=1)] = 8192,
    max_new_tokens: Annotated[int, Field(ge=1)] = 2048,
    text_temperature: Annotated[float, Field(ge=0.0)] = 0.0,
    code_temperature: Annotated[float, Field(ge=0.0)] = 0.0,
    system_prompt: str = "",
    isolation: Literal["bwrap", "none"] = "bwrap",
    protocol: Literal["thyme", "vlmevalkit"] = "thyme",
    retries: Annotated[int, Field(ge=0)] = 0,
    judge_url: str = "",
    judge_model: str = "",
    agent_settings: dict[str, Any] | None = None,
    store: str = "",
    cluster: str = "",
    dataset: str = "eval",
    gpus_per_shard: Annotated[float, Field(ge=0.0)] = 1.0,
) -> dict:
    """Evaluate a model on a VLMEvalKit-style TSV benchmark through the agent loop, by benchmark and category.

    Args:
        tsv: The benchmark file in VLMEvalKit TSV form (index, image as base64, question, answer, category...),
            a path on the worker's machine (with `cluster`: the driver's; the Ray workers get it via `store`).
        home: The data home folder on the worker's machine where trajectories and results go. Empty: the
            worker's THYME_HOME, which `thyme serve --home DIR` sets, else ~/.local/share/thyme.
        backend: The generator: transformers (a local checkpoint), vllm (GPU), openai (an OpenAI-compatible
            server) or scripted (recorded responses, for tests and demos).
        model: A checkpoint folder (empty: the tiny offline model in the home), for openai the server's base
            URL, e.g. http://127.0.0.1:8000/v1, or with `store` a model version NAME@HASH (pulled into this
            worker's home). With `cluster`: a version, or a folder here (stored by content first); each
            node pulls it from the store once.
        response_file: For the scripted backend: a response text, or a .jsonl of responses per index.
        served_model: For the openai backend: the model name the server serves.
        device: For the transformers backend: cpu or cuda.
        shard_rows: Benchmark rows per shard (the unit a rerun skips).
        run_id: The run id results are filed under. Empty: a hash of benchmark, model and settings, so a rerun
            with the same ones resumes.
        max_rounds: Code executions per trajectory; one more closing code tag ends it.
        max_length: Token budget per trajectory (prompt, images, output).
        max_new_tokens: Tokens per generation call.
        text_temperature: Sampling temperature outside code (0 = greedy).
        code_temperature: Sampling temperature inside code (0 = greedy).
        system_prompt: A system prompt file. Empty: infra/prompts/system.txt.
        isolation: bwrap runs model code in a bubblewrap sandbox; none runs it unisolated (trusted models only).
        protocol: The scoring: thyme (our matcher) or vlmevalkit (its rule stage, the judge where its rules
            decide nothing), for numbers comparable with published ones.
        retries: vlmevalkit protocol: re-run a trajectory that ends without an answer up to this many times.
        judge_url: vlmevalkit protocol: the OpenAI-compatible judge's base URL. Empty: THYME_JUDGE_URL, else
            VLMEvalKit's exact-matching mode.
        judge_model: vlmevalkit protocol: the model name the judge serves.
        agent_settings: Any other agent loop setting by its AgentConfig name, e.g. {"top_p": 0.9,
            "timeout_s": 20}; it overrides the parameters above. A wrong name fails the run with the valid names.
        store: The version store (s3://bucket/prefix or a folder). Set (as the pipeline does): the result is
            recorded there under the stage's key and a recorded stage is not run again; with `cluster` the
            shards write into it. Empty: $THYME_STORE, else ~/.local/share/thyme-store, for the cluster only.
        cluster: A Ray cluster (ray://HOST:PORT) to run the shards on. Empty: $THYME_RAY_ADDRESS, else this
            machine.
        dataset: With `cluster`: the dataset version the trajectories are published as.
        gpus_per_shard: With `cluster`: GPUs each shard holds, one backend per GPU (0 for CPU backends).
    """
    key = None
    if store:
        params = {k: v for k, v in locals().items() if k not in ("home", "store", "model", "tsv", "key", "cluster")}
        key = eval_stage_key(store, tsv, model, params)
        done = stage_done(store, key)
        if done:
            get_run_logger().info(f"evaluate: stage {key} already recorded; skipped")
            return {**done["summary"], "skipped": True, "report": f"stage {key} already recorded; skipped"}
    address = cluster_address(cluster)
    if store and not address:  # (on a cluster each node pulls the model itself: nothing to pull here)
        model = resolve_model_version(model, str(resolve_home(home).ensure().root), store)
    spec = BackendSpec(backend, model, response_file, device, served_model)
    config = from_settings(dict(max_rounds=max_rounds, max_length=max_length, max_new_tokens=max_new_tokens,
                                text_temperature=text_temperature, code_temperature=code_temperature,
                                system_prompt=system_prompt, isolation=isolation) | (agent_settings or {}))
    scoring = EvalScoring(protocol=protocol, retries=retries, judge_url=judge_url, judge_model=judge_model)
    home_root = str(resolve_home(home).ensure().root)
    version, home_updated, store_uri = {}, True, ""
    if address:  # (the cluster path scores with our protocol; vlmevalkit scoring runs locally)
        store_uri = store or default_store_uri()
        files = ship_eval_files(store_uri, tsv, response_file, model, home_root)  # no shared disk: the store
        spec = for_workers(spec, files)
        shards = plan_eval_shards(tsv, spec, config, shard_rows, run_id, scoring)
        stored = run_shards(eval_shard_on_cluster,
                            [dict(shard=s, spec=spec, config=config, address=address, store_uri=store_uri,
                                  gpus=gpus_per_shard, files=files) for s in shards],
                            f"evaluate {tsv} on {address}", lambda s: {"correct": s.result.correct}, address)
        published = publish_version(store_uri, dataset or "eval", stored, home_root)
        results, version = [s.result for s in stored], {"version": published.manifest, "dataset": dataset or "eval"}
        home_updated = published.home_updated
    else:
        shards = plan_eval_shards(tsv, spec, config, shard_rows, run_id, scoring)
        futures = [eval_shard.submit(s, home_root, spec, config, scoring) for s in shards]
        run_key = record_eval_plan(home_root, tsv, shards, spec, config, scoring)
        results = wait_recording_failure(futures, f"evaluate {tsv}", lambda r: {"correct": r.correct}, home_root,
                                         "eval", run_key)
    run = shards[0].run_id if shards else run_id
    in_place = {} if home_updated else dict(store_uri=store_uri, version=f"{version['dataset']}@{version['version']}")
    markdown = eval_report(home_root, run, **in_place)
    summary = {"run_id": run, "protocol": protocol, "shards": len(results),
               "shards_reused": sum(r.reused for r in results),
               "samples": sum(r.samples for r in results), "correct": sum(r.correct for r in results)}
    if store:  # (a cluster run records the version its shards were published as)
        outputs = {"dataset": f"{version['dataset']}@{version['version']}"} if version else {}
        record_stage(store, key, "evaluate", outputs, summary=summary)
    if not address:
        record_run_end(home_root, "eval", run_key, {"dataset": f"{version['dataset']}@{version['version']}"}
                       if version else {})
    get_run_logger().info(f"evaluate {run} ({protocol} protocol): {summary['correct']}/{summary['samples']} "
                          f"correct; {summary['shards_reused']} of {summary['shards']} shards reused from an "
                          f"earlier run")
    return {**summary, **version, "report": markdown}
