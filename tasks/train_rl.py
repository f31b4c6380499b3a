"""Prefect tasks of RL training: thin wrappers over thyme_core.rl.launch (and run) and thyme_core.pipeline.training.

With nproc 0 the run happens in this process (the tiny model on CPU, or one GPU without DeepSpeed); with
nproc >= 1 it launches the torchrun ranks (thyme_core/rl/entry.py) of this node and streams their lines and
metrics to the run logger. A retried task resumes from the run's newest checkpoint, and a finished run (same prompts,
config and code) is skipped by thyme_core itself.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import publish_markdown
from tasks.retry import retry_unless_user_error
from thyme_core.base.home import DataHome
from thyme_core.pipeline import training
from thyme_core.rl import launch as rl_launch
from thyme_core.rl import run as rl_run
from thyme_core.rl.config import load_preset
from thyme_core.runs.launch import Nodes
from thyme_core.viewer.links import markdown_link
from thyme_core.versions.store import open_store


def rl_values(model: str | None, data: str | None, max_steps: int | None, overrides: dict | None,
              nnodes: int = 1) -> dict:
    """The preset overrides of an RL run, built alike by the flow and by the pipeline computing its key."""
    values = {**(overrides or {}), "model": model, "split": data, "max_steps": max_steps,
              "nnodes": nnodes if nnodes > 1 else None}
    return {k: v for k, v in values.items() if v is not None}


@task(name="prepare-rl-run", cache_policy=NO_CACHE)
def prepare_rl_run(home_root: str, preset: str, overrides: dict, dataset: str = "", store: str = ""
                   ) -> rl_run.RlRunSpec:
    cfg = load_preset(preset, **overrides)
    if dataset:
        return training.prepare_rl(DataHome(home_root), open_store(store or None), cfg, dataset)
    return rl_launch.prepare_run(DataHome(home_root), cfg)


@task(name="rl-stage-key", cache_policy=NO_CACHE)
def rl_stage_key(preset: str, overrides: dict, dataset: str, store: str = "") -> str:
    return training.rl_key(open_store(store or None), load_preset(preset, **overrides), dataset)


@task(name="run-rl", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE, task_run_name="rl-{spec.key}")
def run_rl(spec: rl_run.RlRunSpec, home_root: str, nodes: Nodes = Nodes()) -> dict:
    logger = get_run_logger()
    result = rl_launch.train(DataHome(home_root), spec, on_metrics=lambda m: logger.info(rl_run.format_metrics(m)),
                          on_line=logger.info, nodes=nodes)
    if nodes.node_rank != 0:  # node 0 holds the records, final/ and DONE
        return result
    publish_markdown(rl_run.report_markdown(spec) + markdown_link("rl", spec.key), ("rl-run",), "RL run summary")
    return result
