"""Flow `train_sft`: a prepared catalog -> SFT weights (stage 1 on image data, stage 2 annealing).

Outputs, in the data home: runs/sft/stage<N>/<key>/ (config.json, samples.parquet, plan.json, drops.jsonl,
metrics.jsonl, checkpoints/, final/ in Hugging Face format, DONE), runs/sft/stage<N>/LATEST (the key of the
newest finished run; stage 2 starts from stage 1's), and a markdown artifact with the run's metrics.
Deployed on the `gpu` work pool; the same flow runs the tiny model on CPU.
"""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow, get_run_logger
from pydantic import Field

from tasks import user_errors
from tasks.train import prepare_sft_run, publish_sft_report, run_sft
from thyme_core.base.home import resolve_home

user_errors.install()


@flow(name="train_sft", log_prints=True)
def train_sft(stage: Literal[1, 2] = 1, model: str | None = None,
              max_steps: Annotated[int, Field(ge=1)] | None = None, home: str | None = None,
              preset: str | None = None, init_from: str | None = None, overrides: dict | None = None) -> dict:
    """SFT stage 1 (image data) or stage 2 (annealing on computation data) with torchrun + DeepSpeed.

    Args:
        stage: 1 trains on the image samples; 2 anneals on computation data from stage 1's newest weights.
        model: The model folder to fine-tune (stage 1), on the worker's machine. Empty: the tiny offline
            Qwen2.5-VL of the home (a CPU demo).
        max_steps: Stop after this many optimizer steps. Empty: the preset's.
        home: The data home folder on the worker's machine: its catalog is the training data and runs/sft/
            gets the run. Empty: the worker's THYME_HOME, which `thyme serve --home DIR` sets, else
            ~/.local/share/thyme.
        preset: infra/presets/<name>.yaml or a path. Empty: sft_stage<N> with a model or init_from,
            sft_tiny_stage<N> without.
        init_from: Stage 2: start from these weights instead of stage 1's newest finished run.
        overrides: Config fields set over the preset, e.g. {"learning_rate": 2e-5, "nproc": 8} (`thyme
            train-sft --help-config` lists them all).
    """
    home_root = str(resolve_home(home).ensure().root)
    preset = preset or (f"sft_stage{stage}" if model or init_from else f"sft_tiny_stage{stage}")
    values = {**(overrides or {}), "stage": stage, "model": model, "max_steps": max_steps, "init_from": init_from}
    spec = prepare_sft_run(home_root, preset, {k: v for k, v in values.items() if v is not None})
    if spec.done:
        print(f"SFT stage {stage}: run {spec.key} already finished (same data, config and code); skipped")
        final = str(spec.run_dir / "final")
    else:
        final = run_sft(spec, home_root)
    publish_sft_report(spec)
    get_run_logger().info(f"SFT stage {stage}: run {spec.key}{' (reused)' if spec.done else ''}, final weights {final}")
    return {"stage": stage, "key": spec.key, "run_dir": str(spec.run_dir), "final": final, "skipped": spec.done}
