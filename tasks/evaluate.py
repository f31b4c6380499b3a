"""Prefect tasks of evaluation: thin wrappers over thyme_core.eval.evaluate."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import publish_markdown

from thyme_core.eval import evaluate
from thyme_core.agent.config import AgentConfig
from thyme_core.agent.infer import BackendSpec
from thyme_core.base.home import DataHome
from thyme_core.viewer.links import markdown_link
from thyme_core.pipeline import training
from thyme_core.versions.folders import resolve_model
from thyme_core.versions.query import version_querier
from thyme_core.versions.store import open_store


@task(name="plan-eval-shards", cache_policy=NO_CACHE)
def plan_eval_shards(tsv: str, spec: BackendSpec, config: AgentConfig, shard_rows: int, run_id: str,
                     scoring: evaluate.EvalScoring = evaluate.EvalScoring()) -> list[evaluate.EvalShard]:
    return evaluate.plan(tsv, spec, config, shard_rows, run_id, scoring)


# No retries: a shard that fails fails the same way again; the rest of the run is kept and a re-run resumes.
@task(name="eval-shard", cache_policy=NO_CACHE)
def eval_shard(shard: evaluate.EvalShard, home_root: str, spec: BackendSpec, config: AgentConfig,
               scoring: evaluate.EvalScoring = evaluate.EvalScoring()) -> evaluate.ShardOutcome:
    outcome = evaluate.eval_shard(shard, DataHome(home_root), spec, config, scoring)
    get_run_logger().info(f"shard {outcome.key}: {outcome.correct}/{outcome.samples} correct"
                          f"{' (already done, reused)' if outcome.reused else ''}")
    return outcome


@task(name="eval-report", cache_policy=NO_CACHE)
def eval_report(home_root: str, run_id: str, store_uri: str = "", version: str = "") -> str:
    """From the home's catalog, or with `version` (NAME@SHA) from that version in the store."""
    where = version_querier(open_store(store_uri), version) if version else DataHome(home_root)
    markdown = evaluate.report_markdown(where, run_id) + markdown_link("eval", run_id)
    # (artifact_key makes any run id a valid key: before_sft and the like)
    return publish_markdown(markdown, ("eval", run_id.lower().removeprefix("eval-")),
                            "Accuracy by benchmark and category")


@task(name="eval-stage-key", cache_policy=NO_CACHE)
def eval_stage_key(store: str, tsv: str, model: str, params: dict) -> str:
    return training.eval_key(open_store(store or None), tsv, model, params)


@task(name="pull-model", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=3)
def resolve_model_version(model: str, home_root: str, store: str) -> str:
    """A model version NAME@HASH pulled into the home's model cache (its folder); anything else as given."""
    return resolve_model(model or None, DataHome(home_root), open_store(store or None))[0] or ""
