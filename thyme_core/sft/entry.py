"""The training entry script: `torchrun --nproc_per_node=N -m thyme_core.sft.entry RUN_DIR`.

RUN_DIR holds what the launcher (launch.py) prepared: config.json (an SftConfig whose `model` is an
existing folder), run.json (the data home, the run key) and samples.parquet (the catalog rows to train on). Every rank builds the same examples
and the same batch plan from them, so nothing but the step number has to be shared or stored for a resume.
Writes metrics.jsonl, checkpoints/, drops.jsonl and, at the end, final/ (HF format) and DONE.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu" if not os.environ.get("CUDA_VISIBLE_DEVICES") else "cuda")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: torchrun ... -m thyme_core.sft.entry RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(args[0])
    import deepspeed
    import pyarrow.parquet as pq
    import torch

    from thyme_core.agent.prompt import load_system_prompt
    from thyme_core.base.ranks import Ranks
    from thyme_core.model import load_model, load_processor, weights_fingerprint
    from thyme_core.runs import checkpoint, folder
    from thyme_core.sft import loop
    from thyme_core.sft.batching import padding_ratio, plan_batches
    from thyme_core.sft.config import SftConfig
    from thyme_core.sft.examples import ExampleOptions, build_examples

    cfg = SftConfig.from_json((run_dir / "config.json").read_text())
    cuda = torch.cuda.is_available()
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    if world != cfg.world:
        raise SystemExit(f"config says nproc={cfg.nproc} x nnodes={cfg.nnodes} but {world} processes were started")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    processor = load_processor(cfg.model, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
    opts = ExampleOptions(max_length=cfg.max_length, last_round_only=cfg.last_round_only,
                          system_prompt=load_system_prompt(cfg.system_prompt), min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
    samples = pq.read_table(run_dir / "samples.parquet").to_pylist()
    home_root = Path(json.loads((run_dir / "run.json").read_text())["home"])
    examples, drops = build_examples(samples, home_root, processor, opts)
    lengths = [e.n_tokens for e in examples]
    plan = plan_batches(lengths, [e.has_image for e in examples], cfg.global_batch, seed=cfg.seed,
                        epochs=cfg.epochs, separate_kinds=cfg.separate_kinds, image_ratio=cfg.image_ratio,
                        group_batches=cfg.group_batches)
    total = len(plan) if cfg.max_steps < 0 else min(cfg.max_steps, len(plan))
    if total == 0:
        raise SystemExit(f"no full batch of {cfg.global_batch} among {len(examples)} examples")
    ctx = loop.Context(cfg, run_dir, examples, plan, processor, rank, world, device)
    if ctx.is_main:
        _write_plan_report(run_dir, samples, examples, drops, plan, total, lengths, cfg, padding_ratio)
    use_bf16 = cfg.bf16 if cfg.bf16 is not None else cuda
    model = load_model(cfg.model, dtype=torch.float32, attn_implementation=cfg.attn_implementation,
                       device=str(device))
    model.to(device).train()
    # every node must train the same run from the same weights (a key names the model by path only)
    Ranks.from_dist().agree({"run key": run_dir.name, "start weights": weights_fingerprint(model)})
    engine = loop.build_engine(model, cfg, total, use_bf16)
    loop.run(engine, ctx, total)
    zero_stage = engine.zero_optimization_stage()
    checkpoint.save_final(engine, model, processor, run_dir, zero_stage, ctx.is_main)
    torch.distributed.barrier()
    if ctx.is_main:
        folder.mark_done(run_dir, total)
    torch.distributed.destroy_process_group()
    return 0


def _write_plan_report(run_dir, samples, examples, drops, plan, total, lengths, cfg, padding_ratio) -> None:
    from collections import Counter

    from thyme_core.runs import metrics
    from thyme_core.sft.batching import micro_batches

    with open(run_dir / "drops.jsonl", "w") as f:
        for d in drops:
            f.write(json.dumps({"sample_id": d.sample_id, "reason": str(d.reason), "detail": d.detail}) + "\n")
    micro = [[lengths[i] for i in mb] for step in plan.steps[:total] for r in range(cfg.world)
             for mb in micro_batches(step, lengths, cfg.world, r, cfg.micro_batch)]
    report = {"event": "plan", "samples": len(samples), "examples": len(examples),
              "drops": dict(Counter(str(d.reason) for d in drops)), "steps": total, "steps_planned": len(plan),
              "left_out_per_epoch_sum": plan.left_out, "kinds": dict(Counter(plan.kinds[:total])),
              "planned_padding": round(padding_ratio(micro), 4)}
    (run_dir / "plan.json").write_text(json.dumps(report, indent=1))
    metrics.say(report)


if __name__ == "__main__":
    sys.exit(main())
