"""The RL ranks: `torchrun --nproc_per_node=N -m thyme_core.rl.entry RUN_DIR` (started by run.train, on one
node or, with nnodes > 1, on every node of the run: ranks are global, devices by LOCAL_RANK).

RUN_DIR holds what launch.prepare_run wrote: config.json (an RlConfig with nproc >= 1 and `model` a folder),
run.json (the data home, the key) and prompts.jsonl. Each rank holds:
- the policy in a DeepSpeed engine (infra/deepspeed/<deepspeed>.json: ZeRO-2 or ZeRO-3, torch AdamW at a
  constant learning rate, gradient clipping from the config, bf16 on CUDA); gradient accumulation is driven
  by update.DeepSpeedUpdate (one micro-step per sequence);
- the frozen reference (beta > 0): a ZeRO-3 inference engine when the policy is ZeRO-3 (partitioned like
  it), else a plain frozen copy;
- a rollout engine: the transformers backend over an unpartitioned copy of the weights, or vLLM in-process
  (rollout_engine vllm, GPU; never run yet: no GPU and no vLLM here, only its weight sink is tested against
  a stand-in); after every update sync.py copies the engine's weights into it, gathering ZeRO-3
  parameters block by block (every rank takes part).
Rank 0 (node 0) writes metrics.jsonl, the catalog rows, final/ and DONE; every rank saves its DeepSpeed checkpoint
shard, and a checkpoint counts once each node's first rank marked it COMPLETE (runs/checkpoint.py), so a run
killed mid-save resumes from the one before. Lines `METRICS {json}` on stdout carry each step's record to the launcher.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from thyme_core.base import hooks

os.environ.setdefault("DS_ACCELERATOR", "cpu" if not os.environ.get("CUDA_VISIBLE_DEVICES") else "cuda")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: torchrun ... -m thyme_core.rl.entry RUN_DIR", file=sys.stderr)
        return 2
    import deepspeed
    import torch

    from thyme_core.rl import run as rl_run
    from thyme_core.rl.update import DeepSpeedUpdate, Learner, Ranks

    home, spec = rl_run.read_spec(Path(args[0]))
    cfg = spec.config
    cuda = torch.cuda.is_available()
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
    ranks = Ranks.from_dist()
    if ranks.world != cfg.world:
        raise SystemExit(f"config says nproc={cfg.nproc} x nnodes={cfg.nnodes} but {ranks.world} processes were "
                         "started")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    steer, judge_factory = rl_run.load_hooks()
    judge = judge_factory() if judge_factory else rl_run.judge_from_env()

    engine, reference, processor, zero3 = _policy_and_reference(cfg, ranks, spec.key, device, cuda)
    backend, new_sink, inputs_for = _rollout_engine(cfg, home, device, processor, cuda)
    if steer:
        steer(backend)
    learner = Learner(engine, reference, DeepSpeedUpdate(engine), ranks)

    from thyme_core.rl.sync import sync_weights
    from thyme_core.runs import checkpoint

    start = checkpoint.resume_deepspeed(engine, spec.run_dir, ranks)
    if start:
        sync_weights(engine.module, new_sink())
        _say(ranks, {"event": "resumed", "step": start})
    rl_run.run_steps(home, spec, backend, learner, inputs_for, judge, start,
                     lambda step: _save(engine, spec.run_dir, step, ranks),
                     lambda: sync_weights(engine.module, new_sink()), on_metrics=lambda m: _say(ranks, m))
    checkpoint.save_final(engine, engine.module, processor, spec.run_dir, 3 if zero3 else 0, ranks.is_main)
    ranks.barrier()
    if ranks.is_main:
        rl_run.finish(home, spec)
    backend.close()
    torch.distributed.destroy_process_group()
    return 0


def _policy_and_reference(cfg, ranks, key: str, device, cuda: bool):
    """(DeepSpeed engine over the policy, the frozen reference or None, processor, ZeRO-3?). The ranks first
    agree on the run key and the start weights: DeepSpeed would broadcast rank 0's policy, but each node's
    rollout engine and reference load their own copy, so a node with other weights would roll out another model."""
    import deepspeed
    import torch

    from thyme_core.model import weights_fingerprint

    ds_config = _deepspeed_config(cfg, ranks.world, bf16=cuda)
    zero3 = ds_config["zero_optimization"]["stage"] == 3
    policy, processor = _load(cfg, device, bf16=cuda)
    ranks.agree({"run key": key, "start weights": weights_fingerprint(policy)})
    if cfg.freeze_vision:
        from thyme_core.runs.engine import freeze_vision

        freeze_vision(policy)
    if cfg.gradient_checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy.config.use_cache = False
    policy.train()
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    engine, _, _, _ = deepspeed.initialize(model=policy, optimizer=optimizer, config=ds_config)
    reference = _reference(cfg, device, ds_config, zero3) if cfg.beta > 0 else None
    return engine, reference, processor, zero3


def _save(engine, run_dir: Path, step: int, ranks) -> None:
    """Every rank writes its shard; the checkpoint counts once rank 0 marks it COMPLETE after all did."""
    from thyme_core.runs import checkpoint

    checkpoint.save_deepspeed(engine, run_dir, step, {}, 1, ranks.barrier)
    hooks.after_step(step)


def _say(ranks, record: dict) -> None:
    if ranks.is_main:
        from thyme_core.runs.metrics import say

        say(record)


def _deepspeed_config(cfg, world: int, bf16: bool) -> dict:
    from thyme_core.runs.engine import fill_deepspeed_config

    # one sequence per micro-step, accumulation driven by hand (update.DeepSpeedUpdate)
    return fill_deepspeed_config(cfg.deepspeed_path(), world, 1, 1, cfg.max_grad_norm, bf16, cfg.nnodes)


def _load(cfg, device, bf16: bool):
    import torch

    from thyme_core.model import load_model, load_processor

    processor = load_processor(cfg.model, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
    model = load_model(cfg.model, dtype=torch.bfloat16 if bf16 else torch.float32, device=str(device))
    return model.to(device), processor


def _reference(cfg, device, ds_config: dict, zero3: bool):
    """The frozen start model: partitioned like the policy under ZeRO-3 (an inference engine), else a copy."""
    import deepspeed

    model, _ = _load(cfg, device, bf16=ds_config["bf16"]["enabled"])
    model.eval().requires_grad_(False)
    if not zero3:
        return model
    ref_config = {k: v for k, v in ds_config.items() if k not in ("gradient_clipping", "zero_allow_untested_optimizer")}
    engine, _, _, _ = deepspeed.initialize(model=model, config=ref_config)
    engine.eval()
    return engine


def _rollout_engine(cfg, home, device, processor, cuda: bool):
    """(backend, a new weight sink per sync, inputs builder) for this rank's rollouts. The backend resizes
    images with the trainer's `processor` (the run's min/max pixels): the training forward of a fed-back image
    then sees the grid the rollout's ledger counted."""
    import functools

    import torch

    from thyme_core.agent.backends.hf import model_inputs
    from thyme_core.rl import sync

    dtype = torch.bfloat16 if cuda else torch.float32
    name = str(cfg.model)
    if cfg.rollout_engine == "vllm":
        from thyme_core.agent.backends.vllm_backend import VLLMBackend

        # colocated, in this rank's process (TRL's "colocate" layout): the engine must live here for
        # sync.VLLMSink to reach its model; one engine per rank (tensor parallel 1) under torchrun
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        backend = VLLMBackend.load(cfg.model, home, processor=processor, max_images=cfg.max_images,
                                   gpu_memory_utilization=cfg.vllm_gpu_memory, enforce_eager=True,
                                   distributed_executor_backend="external_launcher", tensor_parallel_size=1,
                                   max_model_len=cfg.max_length, seed=cfg.seed)
        pad = backend.codec.image_pad_id
        inputs_for = functools.partial(model_inputs, processor, pad, device=device, dtype=dtype)
        return backend, lambda: sync.VLLMSink(backend.llm), inputs_for
    from thyme_core.agent.backends.hf import TransformersBackend

    model, _ = _load(cfg, device, bf16=cuda)
    model.requires_grad_(False)
    backend = TransformersBackend(model, processor, device=str(device), name=name)  # the trainer's processor
    return backend, lambda: sync.HFSink(backend.hf_model), backend.model_inputs


if __name__ == "__main__":
    sys.exit(main())
