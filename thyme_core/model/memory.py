"""A memory plan of the 7B recipes without a GPU: per-GPU bytes of model states and activations for the SFT
and RL presets, from Qwen2.5-VL-7B's real parameter counts.

- Parameters: Qwen2.5-VL-7B built on the meta device (no memory, no download) from its public config
  (model/tiny.SHAPES["7b"]: hidden 3584, 28 layers, 28 heads / 4 KV heads, intermediate 18944, vocabulary
  152064, vision depth 32 / hidden 1280 / intermediate 3420 / 16 heads, untied LM head).
- Model states: DeepSpeed's estimators without offload (stage_1_and_2.estimate_zero2_model_states_mem_needs:
  2 * params + 18 * params / gpus; stage3.estimate_zero3_model_states_mem_needs: 4 * largest layer + 18 *
  params / gpus), split so frozen parameters (SFT's vision tower) count their 16-bit copy only: ZeRO-2
  2 * total + 18 * trainable / gpus, ZeRO-3 4 * largest + (2 * total + 16 * trainable) / gpus. With every
  parameter trainable these ARE DeepSpeed's figures (tests/unit/test_memory_plan.py checks it).
- Activations of one micro-batch of `max_length` tokens in bf16 (flash attention: no T x T scores): with
  gradient checkpointing, every layer's input kept (L x T x H x 2 B) plus one layer recomputed in backward
  (T x (10 H + 4 I) x 2 B: norms, q/k/v/o, residuals, gate/up/act/product); without it, every layer's. The
  loss: `chunk` rows of fp32 logits, three buffers (logits, softmax, gradient). The vision tower at the
  largest image (max_pixels / 196 patches): its layer inputs when it trains, one layer's transient otherwise.
- Fixed: the CUDA context and allocator slack, 2 GB + 10 % of the rest.
- RL adds the frozen reference (partitioned like the policy under ZeRO-3, else whole) and the rollout engine:
  whole bf16 weights plus the KV cache of the rank's trajectories at max_length. vLLM holds `vllm_gpu_memory`
  of the GPU, which the trainer cannot use (and the engine must fit in it); the transformers engine counts
  in the trainer's budget.
Estimates, not measurements: the GPU check (bench/gpu_check.sh) is what confirms them on a real card.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9
BF16 = 2


@dataclass(frozen=True)
class ModelShape:
    total: int  # parameters
    vision: int  # of which the vision tower and merger
    largest_layer: int  # parameters of the largest single module's own weights (the embedding or LM head)
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    kv_dim: int  # key/value width (kv heads x head dim)
    vision_hidden: int
    vision_layers: int
    vision_intermediate: int


def qwen25vl_7b() -> ModelShape:
    """Counts of Qwen2.5-VL-7B from the model built on the meta device."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from thyme_core.model.tiny import SHAPES, build_tokenizer, tiny_config

    config = tiny_config(build_tokenizer(), "7b")
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.visual.parameters())
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    text, vis = SHAPES["7b"]["text"], SHAPES["7b"]["vision"]
    heads, kv = text["num_attention_heads"], text["num_key_value_heads"]
    return ModelShape(total, vision, largest, text["hidden_size"], text["num_hidden_layers"],
                      text["intermediate_size"], SHAPES["7b"]["vocab_size"], text["hidden_size"] // heads * kv,
                      vis["hidden_size"], vis["depth"], vis["intermediate_size"])


def model_states(shape: ModelShape, zero_stage: int, gpus: int, trainable: int) -> float:
    """Bytes per GPU of weights, gradients and AdamW state (DeepSpeed's estimators, frozen weights 16-bit only)."""
    if zero_stage == 3:
        return 4 * shape.largest_layer + (2 * shape.total + 16 * trainable) / gpus
    return 2 * shape.total + 18 * trainable / gpus


def activations(shape: ModelShape, tokens: int, checkpointing: bool, chunk: int, image_pixels: int,
                train_vision: bool) -> float:
    """Bytes of one micro-batch's activations (bf16, flash attention) and its chunked fp32 loss."""
    per_layer = tokens * (10 * shape.hidden + 4 * shape.intermediate) * BF16
    text = shape.layers * tokens * shape.hidden * BF16 + per_layer if checkpointing else shape.layers * per_layer
    loss = 3 * min(chunk, tokens) * shape.vocab * 4
    patches = image_pixels // 196
    vis_layer = patches * (10 * shape.vision_hidden + 3 * shape.vision_intermediate) * BF16
    if not train_vision:
        vision = vis_layer  # no gradient: one layer's transient
    elif checkpointing:
        vision = shape.vision_layers * patches * shape.vision_hidden * BF16 + vis_layer
    else:
        vision = shape.vision_layers * vis_layer
    return text + loss + vision


def _row(parts: dict[str, float], budget: float, gpu_gb: float) -> dict:
    used = sum(parts.values())
    total = 2 * GB + 1.1 * used
    return {**{k: round(v / GB, 1) for k, v in parts.items()}, "total_gb": round(total / GB, 1),
            "budget_gb": round(budget / GB, 1), "fits": total <= budget, "gpu_gb": gpu_gb}


def plan_sft(cfg, gpus: int, shape: ModelShape, gpu_gb: float = 80.0) -> dict:
    """Per-GPU plan of an SftConfig on `gpus` GPUs (ZeRO stage from its DeepSpeed file)."""
    trainable = shape.total - shape.vision if cfg.freeze_vision else shape.total
    parts = {"model_states_gb": model_states(shape, _stage(cfg), gpus, trainable),
             "activations_gb": cfg.micro_batch * activations(shape, cfg.max_length, cfg.gradient_checkpointing,
                                                             cfg.loss_chunk, cfg.max_pixels, not cfg.freeze_vision)}
    return _row(parts, gpu_gb * GB, gpu_gb)


def plan_rl(cfg, gpus: int, shape: ModelShape, gpu_gb: float = 80.0) -> dict:
    """Per-GPU plan of an RlConfig on `gpus` ranks: policy, reference, rollout engine, one sequence at a time."""
    zero = _stage(cfg)
    trainable = shape.total - shape.vision if cfg.freeze_vision else shape.total
    parts = {"model_states_gb": model_states(shape, zero, gpus, trainable),
             "activations_gb": activations(shape, cfg.max_length, cfg.gradient_checkpointing, cfg.logprob_chunk,
                                           cfg.max_pixels, not cfg.freeze_vision)}
    if cfg.beta > 0:
        parts["reference_gb"] = 2 * shape.total / (gpus if zero == 3 else 1)
    budget = gpu_gb * GB
    # the rollout engine: whole bf16 weights and the KV cache of this rank's trajectories at max_length
    engine = 2 * shape.total + 2 * shape.layers * cfg.max_length * shape.kv_dim * BF16 * max(
        1, cfg.group_size * cfg.prompts_per_step // gpus)
    if cfg.rollout_engine == "vllm":
        budget *= 1 - cfg.vllm_gpu_memory  # vLLM's share of the GPU: the trainer cannot use it
        row = _row(parts, budget, gpu_gb)
        share = cfg.vllm_gpu_memory * gpu_gb * GB
        row.update(vllm_needs_gb=round(engine / GB, 1), vllm_share_gb=round(share / GB, 1))
        row["fits"] = row["fits"] and engine <= share
        return row
    parts["rollout_engine_gb"] = engine
    return _row(parts, budget, gpu_gb)


def _stage(cfg) -> int:
    import json

    return json.loads(cfg.deepspeed_path().read_text())["zero_optimization"]["stage"]


def preset_plans(gpu_counts=(8, 32), gpu_gb: float = 80.0) -> list[dict]:
    """The SFT and RL presets (and, for contrast, SFT stage 1 without gradient checkpointing)."""
    from thyme_core.rl.config import load_preset as rl_preset
    from thyme_core.sft.config import load_preset as sft_preset

    shape = qwen25vl_7b()
    configs = [("sft_stage1", sft_preset("sft_stage1"), plan_sft), ("sft_stage2", sft_preset("sft_stage2"), plan_sft),
               ("rl", rl_preset("rl"), plan_rl),
               ("rl, transformers rollouts", rl_preset("rl", rollout_engine="transformers"), plan_rl),
               ("sft_stage1 without gradient checkpointing",
                sft_preset("sft_stage1", gradient_checkpointing=False), plan_sft)]
    return [{"preset": name, "gpus": n, **plan(cfg, n, shape, gpu_gb)}
            for name, cfg, plan in configs for n in gpu_counts]


def markdown(rows: list[dict]) -> str:
    keys = ["model_states_gb", "activations_gb", "reference_gb", "rollout_engine_gb"]
    lines = ["| preset | GPUs | model states | activations | reference | rollout engine | total | budget | fits |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [str(r.get(k, "-")) for k in keys]
        lines.append(f"| {r['preset']} | {r['gpus']} | {' | '.join(cells)} | {r['total_gb']} | {r['budget_gb']} | "
                     f"{'yes' if r['fits'] else 'NO'} |")
    return "\n".join(lines)
