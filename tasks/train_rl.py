"""Prefect tasks of RL training: thin wrappers over thyme_core.rl.run.

With nproc 0 the run happens in this process (the tiny model on CPU, or one GPU without DeepSpeed); with
nproc >= 1 it launches the torchrun ranks (thyme_core/rl/entry.py) and streams their lines and metrics to the
run logger. A retried task resumes from the run's newest checkpoint, and a finished run (same prompts,
config and code) is skipped by thyme_core itself.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import publish_markdown
from tasks.retry import retry_unless_user_error
from thyme_core.base.home import DataHome
from thyme_core.rl import run as rl_run
from thyme_core.rl.config import load_preset


@task(name="prepare-rl-run", cache_policy=NO_CACHE)
def prepare_rl_run(home_root: str, preset: str, overrides: dict) -> rl_run.RlRunSpec:
    return rl_run.prepare_run(DataHome(home_root), load_preset(preset, **overrides))


@task(name="run-rl", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE, task_run_name="rl-{spec.key}")
def run_rl(spec: rl_run.RlRunSpec, home_root: str) -> dict:
    logger = get_run_logger()
    result = rl_run.train(DataHome(home_root), spec, on_metrics=lambda m: logger.info(rl_run.format_metrics(m)),
                          on_line=logger.info)
    publish_markdown(rl_run.report_markdown(spec), ("rl-run",), "RL run summary")
    return result
