"""Prefect tasks of SFT training: thin wrappers over thyme_core.sft.launch and thyme_core.pipeline.training.

The training itself runs in a torchrun subprocess; these tasks prepare its run folder (from the home's
catalog, or from a dataset version checked out into the home), stream its output to the Prefect run logger,
retry a failed launch (the relaunch resumes from the run's last checkpoint), and publish the final weights
as a model version.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from tasks.artifacts import describe, publish_markdown
from tasks.retry import retry_unless_user_error
from thyme_core.base.home import DataHome
from thyme_core.pipeline import training
from thyme_core.runs import rendezvous
from thyme_core.runs.launch import Nodes
from thyme_core.sft import launch
from thyme_core.sft.config import load_preset
from thyme_core.versions.store import open_store

# A finished run is skipped by thyme_core itself (its folder has DONE, keyed by dataset, config and code),
# which holds wherever the home goes; no Prefect result cache is used.


def sft_values(stage: int, model: str | None, max_steps: int | None, init_from: str | None, nnodes: int,
               overrides: dict | None) -> dict:
    """The preset overrides of an SFT run, built alike by the flow and by the pipeline computing its key."""
    values = {**(overrides or {}), "stage": stage, "model": model, "max_steps": max_steps, "init_from": init_from,
              "nnodes": nnodes if nnodes > 1 else None}
    return {k: v for k, v in values.items() if v is not None}


def sft_preset(stage: int, model: str | None, init_from: str | None, preset: str | None) -> str:
    return preset or (f"sft_stage{stage}" if model or init_from else f"sft_tiny_stage{stage}")


@task(name="prepare-sft-run", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE)
def prepare_sft_run(home_root: str, preset: str, overrides: dict, dataset: str = "", store: str = ""
                    ) -> launch.RunSpec:
    cfg = load_preset(preset, **overrides)
    if dataset:
        return training.prepare_sft(DataHome(home_root), open_store(store or None), cfg, dataset)
    return launch.prepare_run(DataHome(home_root), cfg)


@task(name="sft-stage-key", cache_policy=NO_CACHE)
def sft_stage_key(preset: str, overrides: dict, dataset: str, store: str = "") -> str:
    return training.sft_key(open_store(store or None), load_preset(preset, **overrides), dataset)


@task(name="meet-nodes", cache_policy=NO_CACHE)
def meet_nodes(store: str, run_id: str, nnodes: int, node_rank: int, timeout: float, finished: bool = False
               ) -> Nodes:
    """This node's place in the stage; node 0 tells the others whether its run is `finished` already."""
    if nnodes == 1:
        return Nodes(finished=finished)
    return rendezvous.meet(open_store(store or None), run_id, nnodes, node_rank, timeout, finished=finished)


@task(name="run-sft", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE, task_run_name="sft-stage{spec.config.stage}-{spec.key}")
def run_sft(spec: launch.RunSpec, home_root: str, nodes: Nodes = Nodes()) -> str:
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

    rc = launch.launch(spec, on_line=logger.info, on_metrics=on_metrics, nodes=nodes)
    if rc != 0:
        raise RuntimeError(f"training exited with code {rc}; a retry resumes from the last checkpoint")
    if nodes.node_rank != 0:  # node 0 holds DONE, final/ and the run's records
        return ""
    return str(launch.finish(DataHome(home_root), spec))


@task(name="publish-model", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_unless_user_error,
      cache_policy=NO_CACHE)
def publish_model(store: str, run_dir: str, final: str, name: str, stage: str, key: str | None, inputs: dict
                  ) -> tuple[str, dict]:
    """Final weights -> model version NAME@SHA, its lineage recorded; returns (NAME@SHA, lineage)."""
    from prefect.runtime import flow_run

    record = training.lineage(stage, key, inputs, run_dir, flow_run.id)
    return training.publish_model(open_store(store or None), final, name, record), record


@task(name="publish-sft-report", cache_policy=NO_CACHE)
def publish_sft_report(spec: launch.RunSpec) -> str:
    return publish_markdown(launch.report_markdown(spec), (f"sft-stage{spec.config.stage}",), "SFT run summary")
