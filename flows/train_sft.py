"""Flow `train_sft`: a prepared catalog -> SFT weights (stage 1 on image data, stage 2 annealing).

Outputs, in the data home: runs/sft/stage<N>/<key>/ (config.json, samples.parquet, plan.json, drops.jsonl,
metrics.jsonl, checkpoints/, final/ in Hugging Face format, DONE), runs/sft/stage<N>/LATEST (the key of the
newest finished run; stage 2 starts from stage 1's), and a markdown artifact with the run's metrics.
Deployed on the `gpu` work pool; the same flow runs the tiny model on CPU.
"""

from __future__ import annotations

from prefect import flow

from tasks.train import prepare_sft_run, publish_sft_report, run_sft
from thyme_core.base.home import resolve_home


@flow(name="train_sft", log_prints=True)
def train_sft(stage: int = 1, model: str | None = None, max_steps: int | None = None, home: str | None = None,
              preset: str | None = None, init_from: str | None = None, overrides: dict | None = None,
              system_prompt: str | None = None) -> dict:
    """Train SFT stage 1 or 2. The preset defaults to sft_stage<N> with a model, sft_tiny_stage<N> without.
    `system_prompt`: a system prompt file (default infra/prompts/system.txt), as in `evaluate`."""
    home_root = str(resolve_home(home).ensure().root)
    preset = preset or (f"sft_stage{stage}" if model or init_from else f"sft_tiny_stage{stage}")
    values = {**(overrides or {}), "stage": stage, "model": model, "max_steps": max_steps, "init_from": init_from,
              "system_prompt": system_prompt}
    spec = prepare_sft_run(home_root, preset, {k: v for k, v in values.items() if v is not None})
    if spec.done:
        print(f"SFT stage {stage}: run {spec.key} already finished (same data, config and code); skipped")
        final = str(spec.run_dir / "final")
    else:
        final = run_sft(spec, home_root)
    print(publish_sft_report(spec))
    return {"stage": stage, "key": spec.key, "run_dir": str(spec.run_dir), "final": final, "skipped": spec.done}
