"""Flow `evaluate`: a VLMEvalKit TSV benchmark through the agent loop, scored by benchmark and category.

Outputs, in the data home: shards/agent/eval-<key>/ per shard (trajectories, turns, executions,
eval_results), the catalog views `trajectories`, `turns`, `executions`, `eval_results`, and a markdown
accuracy report (a markdown artifact, and printed by `thyme eval`). Finished shards are skipped on a re-run.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from tasks import user_errors

from tasks.evaluate import eval_report, eval_shard, plan_eval_shards
from tasks.progress import wait_with_progress
from thyme_core.agent.config import from_settings
from thyme_core.agent.infer import BackendSpec
from thyme_core.base.home import resolve_home

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
    agent_settings: dict[str, Any] | None = None,
) -> dict:
    """Evaluate a model on a VLMEvalKit-style TSV benchmark through the agent loop, by benchmark and category.

    Args:
        tsv: The benchmark file in VLMEvalKit TSV form (index, image as base64, question, answer, category...),
            a path on the worker's machine.
        home: The data home folder on the worker's machine where trajectories and results go. Empty: the
            worker's THYME_HOME, which `thyme serve --home DIR` sets, else ~/.local/share/thyme.
        backend: The generator: transformers (a local checkpoint), vllm (GPU), openai (an OpenAI-compatible
            server) or scripted (recorded responses, for tests and demos).
        model: A checkpoint folder (empty: the tiny offline model in the home), or for openai the server's
            base URL, e.g. http://127.0.0.1:8000/v1.
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
        agent_settings: Any other agent loop setting by its AgentConfig name, e.g. {"top_p": 0.9,
            "timeout_s": 20}; it overrides the parameters above. A wrong name fails the run with the valid names.
    """
    spec = BackendSpec(backend, model, response_file, device, served_model)
    config = from_settings(dict(max_rounds=max_rounds, max_length=max_length, max_new_tokens=max_new_tokens,
                                text_temperature=text_temperature, code_temperature=code_temperature,
                                system_prompt=system_prompt, isolation=isolation) | (agent_settings or {}))
    home_root = str(resolve_home(home).ensure().root)
    shards = plan_eval_shards(tsv, spec, config, shard_rows, run_id)
    futures = [eval_shard.submit(s, home_root, spec, config) for s in shards]
    results = wait_with_progress(futures, f"evaluate {tsv}", postfix=lambda r: {"correct": r.correct})
    run = shards[0].run_id if shards else run_id
    markdown = eval_report(home_root, run)
    out = {"run_id": run, "shards": len(results), "shards_reused": sum(r.reused for r in results),
           "samples": sum(r.samples for r in results), "correct": sum(r.correct for r in results)}
    get_run_logger().info(f"evaluate {run}: {out['correct']}/{out['samples']} correct; {out['shards_reused']} of "
                          f"{out['shards']} shards reused from an earlier run")
    return {**out, "report": markdown}
