"""The SFT training loop on a DeepSpeed engine: one function per concern, no trainer class.

Loss is the mean over every label token of the global batch: each micro-batch contributes its summed
token NLL divided by the global batch's label-token count (known from the plan), scaled by ranks *
accumulation because DeepSpeed divides by both (gradient averaging and accumulation). So the update is the
same whatever the micro-batch size or the number of ranks.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from thyme_core.base import hooks
from thyme_core.sft import checkpoint
from thyme_core.sft.batching import BatchPlan, micro_batches
from thyme_core.sft.collate import batch_stats, collate
from thyme_core.sft.config import SftConfig
from thyme_core.sft.examples import Example


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


def freeze_vision(model) -> int:
    """Freeze the vision tower and merger; returns how many parameters stay trainable."""
    for p in model.model.visual.parameters():
        p.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


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
                                 cfg.max_grad_norm, use_bf16)


def fill_deepspeed_config(path: Path, global_batch: int, micro_batch: int, accumulation: int, clip: float,
                          bf16: bool) -> dict:
    """A DeepSpeed config file with its "auto" fields filled (SFT and RL share the infra/deepspeed files)."""
    ds = json.loads(Path(path).read_text())
    ds.update(train_batch_size=global_batch, train_micro_batch_size_per_gpu=micro_batch,
              gradient_accumulation_steps=accumulation, gradient_clipping=clip)
    ds["bf16"] = {"enabled": bf16}
    return ds


def build_engine(model, cfg: SftConfig, total_steps: int, use_bf16: bool):
    import deepspeed

    if cfg.freeze_vision:
        freeze_vision(model)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                  betas=(0.9, 0.999), eps=1e-8)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total_steps, cfg.warmup_ratio))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=deepspeed_config(cfg, use_bf16))
    return engine


def resume(engine, ctx: Context) -> int:
    """Load the newest complete checkpoint; returns the number of steps already taken."""
    step = checkpoint.latest_step(ctx.run_dir)
    if step is None:
        return 0
    engine.load_checkpoint(str(checkpoint.checkpoints_dir(ctx.run_dir)), tag=checkpoint.tag(step))
    return step


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
    totals = torch.zeros(7, dtype=torch.float64)
    for ids in micro_batches(batch_ids, lengths, ctx.world, ctx.rank, ctx.cfg.micro_batch):
        examples = [ctx.examples[i] for i in ids]
        batch = {k: v.to(ctx.device) for k, v in collate(examples, ctx.processor, image_pad, pad).items()}
        stats = batch_stats(examples)
        out = engine(**batch)
        nll_sum = out.loss * stats["label_tokens"]
        engine.backward(nll_sum * scale)
        engine.step()
        kinds = {e.has_image for e in examples}
        totals += torch.tensor([nll_sum.item(), stats["tokens"], stats["padded"], stats["label_tokens"],
                                kinds == {True}, kinds == {False}, len(kinds) == 2], dtype=torch.float64)
    dist.all_reduce(totals)
    seconds = time.perf_counter() - started
    nll, tokens, padded, labels, image_mb, text_mb, mixed_mb = totals.tolist()
    return {"step": step + 1, "loss": nll / labels, "lr": lr, "tokens": int(tokens),
            "tokens_per_s": tokens / seconds, "padding": 1.0 - tokens / padded, "label_tokens": int(labels),
            "kind": ctx.plan.kinds[step], "seconds": seconds,
            "micro_batches": {"image": int(image_mb), "text": int(text_mb), "mixed": int(mixed_mb)}}


def save(engine, ctx: Context, step: int, metrics: dict) -> None:
    engine.save_checkpoint(str(checkpoint.checkpoints_dir(ctx.run_dir)), tag=checkpoint.tag(step))
    dist.barrier()
    if ctx.is_main:
        checkpoint.mark_complete(ctx.run_dir, step, {"loss": metrics.get("loss")})
        checkpoint.prune(ctx.run_dir, ctx.cfg.keep_checkpoints)
    dist.barrier()


def log(ctx: Context, record: dict) -> None:
    """Rank 0: one JSON line in metrics.jsonl and on stdout (the launcher streams lines starting METRICS)."""
    if not ctx.is_main:
        return
    line = json.dumps(record)
    with open(ctx.run_dir / "metrics.jsonl", "a") as f:
        f.write(line + "\n")
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
