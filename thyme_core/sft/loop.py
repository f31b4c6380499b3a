"""The SFT training loop on a DeepSpeed engine: one function per concern, no trainer class.

Loss is the mean over every label token of the global batch: each micro-batch contributes its summed
token NLL divided by the global batch's label-token count (known from the plan), scaled by ranks *
accumulation because DeepSpeed divides by both (gradient averaging and accumulation). So the update is the
same whatever the micro-batch size or the number of ranks (tests/unit/test_train_scaling.py checks both
against one big batch). The NLL is taken over labelled positions only, with the LM head applied in chunks
(model/forward.py), so no micro-batch ever holds its full fp32 logits. The step's totals are summed over the
ranks through base/ranks.py, on the device the process group needs (CUDA under NCCL).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from thyme_core.base import hooks
from thyme_core.base.ranks import Ranks
from thyme_core.model.forward import labelled_nll_sum
from thyme_core.runs import checkpoint
from thyme_core.runs.engine import fill_deepspeed_config, freeze_vision  # noqa: F401 (the SFT engine's pieces)
from thyme_core.sft.batching import BatchPlan, micro_batches
from thyme_core.sft.collate import batch_stats, collate
from thyme_core.sft.config import SftConfig
from thyme_core.sft.examples import Example
from thyme_core.base import tfevents


@dataclass
class Context:
    cfg: SftConfig
    run_dir: Path
    examples: list[Example]
    plan: BatchPlan
    processor: object
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def lr_lambda(total_steps: int, warmup_ratio: float):
    warmup = max(1, math.ceil(total_steps * warmup_ratio)) if warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def deepspeed_config(cfg: SftConfig, use_bf16: bool) -> dict:
    return fill_deepspeed_config(cfg.deepspeed_path(), cfg.global_batch, cfg.micro_batch, cfg.accumulation,
                                 cfg.max_grad_norm, use_bf16, cfg.nnodes)


def make_optimizer(params, cfg: SftConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                             betas=(0.9, cfg.adam_beta2), eps=1e-8)


def build_engine(model, cfg: SftConfig, total_steps: int, use_bf16: bool):
    import deepspeed

    if cfg.freeze_vision:
        freeze_vision(model)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total_steps, cfg.warmup_ratio))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=deepspeed_config(cfg, use_bf16))
    return engine


def resume(engine, ctx: Context) -> int:
    """Load the newest complete checkpoint; returns the number of steps already taken."""
    return checkpoint.resume_deepspeed(engine, ctx.run_dir, Ranks.from_dist())


def micro_loss(engine, batch: dict, chunk: int) -> torch.Tensor:
    """Summed token NLL of one micro-batch's labelled positions, the LM head applied `chunk` positions at a
    time (model/forward.py): the full fp32 logits of a 10k-token micro-batch are never held."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return labelled_nll_sum(engine, inputs, batch["labels"], chunk)


def train_step(engine, ctx: Context, step: int) -> dict:
    """One optimizer step over this rank's micro-batches of global batch `step`; returns global metrics."""
    lengths = [e.n_tokens for e in ctx.examples]
    batch_ids = ctx.plan.steps[step]
    n_labels = sum(ctx.examples[i].n_label_tokens for i in batch_ids)
    scale = ctx.world * ctx.cfg.accumulation / n_labels
    image_pad = ctx.processor.image_token_id
    pad = ctx.processor.tokenizer.pad_token_id
    lr = engine.get_lr()[0]  # the rate this step uses (the scheduler advances inside engine.step)
    started = time.perf_counter()
    # nll sum, tokens, padded positions, label tokens, then how many micro-batches held images / text only
    # / both: the last must stay 0 when separate_kinds is on (the stage-2 test reads it from the metrics)
    totals = [0.0] * 7
    for ids in micro_batches(batch_ids, lengths, ctx.world, ctx.rank, ctx.cfg.micro_batch):
        examples = [ctx.examples[i] for i in ids]
        batch = {k: v.to(ctx.device) for k, v in collate(examples, ctx.processor, image_pad, pad).items()}
        stats = batch_stats(examples)
        nll_sum = micro_loss(engine, batch, ctx.cfg.loss_chunk)
        engine.backward(nll_sum * scale)
        engine.step()
        kinds = {e.has_image for e in examples}
        row = [nll_sum.item(), stats["tokens"], stats["padded"], stats["label_tokens"], kinds == {True},
               kinds == {False}, len(kinds) == 2]
        totals = [a + float(b) for a, b in zip(totals, row)]
    nll, tokens, padded, labels, image_mb, text_mb, mixed_mb = Ranks.from_dist().sum(totals)
    seconds = time.perf_counter() - started
    grad_norm = engine.get_global_grad_norm()  # of the step's update (clipping applies after it is measured)
    return {"step": step + 1, "loss": nll / labels, "lr": lr, "tokens": int(tokens),
            "tokens_per_s": tokens / seconds, "padding": 1.0 - tokens / padded, "label_tokens": int(labels),
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "kind": ctx.plan.kinds[step], "seconds": seconds,
            "micro_batches": {"image": int(image_mb), "text": int(text_mb), "mixed": int(mixed_mb)}}


def save(engine, ctx: Context, step: int, metrics: dict) -> None:
    checkpoint.save_deepspeed(engine, ctx.run_dir, step, {"loss": metrics.get("loss")}, ctx.cfg.keep_checkpoints,
                              Ranks.from_dist().barrier)


def log(ctx: Context, record: dict) -> None:
    """Rank 0: one JSON line in metrics.jsonl and on stdout (the launcher streams lines starting METRICS); a
    step's numbers also go to the run's TensorBoard event file."""
    if not ctx.is_main:
        return
    line = json.dumps(record)
    with open(ctx.run_dir / "metrics.jsonl", "a") as f:
        f.write(line + "\n")
    if "loss" in record:
        tfevents.append_scalars(ctx.run_dir, record["step"], record, f"sft_stage{ctx.cfg.stage}")
    print(f"METRICS {line}", flush=True)


def run(engine, ctx: Context, total_steps: int) -> None:
    start = resume(engine, ctx)
    if start:
        log(ctx, {"event": "resumed", "step": start})
    for step in range(start, total_steps):
        metrics = train_step(engine, ctx, step)
        done = step + 1
        if done % ctx.cfg.log_steps == 0 or done == total_steps:
            log(ctx, metrics)
        if done % ctx.cfg.save_steps == 0 or done == total_steps:
            save(engine, ctx, done, metrics)
        hooks.after_step(done)
