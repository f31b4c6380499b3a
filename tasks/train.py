"""Prefect tasks of SFT training: thin wrappers over thyme_core.sft.launch.

The training itself runs in a torchrun subprocess; these tasks prepare its run folder, stream its output to
the Prefect run logger, and retry a failed launch: the relaunch resumes from the run's last checkpoint.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import describe, publish_markdown
from tasks.retry import retry_unless_user_error
from thyme_core.base.home import DataHome
from thyme_core.sft import launch
from thyme_core.sft.config import load_preset

# A finished run is skipped by thyme_core itself (its folder has DONE, keyed by dataset, config and code),
# which holds wherever the home goes; no Prefect result cache is used.


@task(name="prepare-sft-run", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE)
def prepare_sft_run(home_root: str, preset: str, overrides: dict) -> launch.RunSpec:
    return launch.prepare_run(DataHome(home_root), load_preset(preset, **overrides))


@task(name="run-sft", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE, task_run_name="sft-stage{spec.config.stage}-{spec.key}")
def run_sft(spec: launch.RunSpec, home_root: str) -> str:
    logger = get_run_logger()
    label = f"SFT stage {spec.config.stage} {spec.key}"
    progress = create_progress_artifact(progress=0.0, description=describe(f"{label}: 0%"))
    state = {"steps": None}

    def on_metrics(m: dict) -> None:
        if m.get("event") == "plan":
            state["steps"] = m["steps"]
        if "loss" in m and state["steps"]:
            pct = 100.0 * m["step"] / state["steps"]
            update_progress_artifact(progress, progress=pct, description=describe(
                f"{label}: {pct:.0f}% ({m['step']}/{state['steps']} steps)"))
        logger.info(launch.format_metrics(m))

    rc = launch.launch(spec, on_line=logger.info, on_metrics=on_metrics)
    if rc != 0:
        raise RuntimeError(f"training exited with code {rc}; a retry resumes from the last checkpoint")
    return str(launch.finish(DataHome(home_root), spec))


@task(name="publish-sft-report", cache_policy=NO_CACHE)
def publish_sft_report(spec: launch.RunSpec) -> str:
    return publish_markdown(launch.report_markdown(spec), (f"sft-stage{spec.config.stage}",), "SFT run summary")
