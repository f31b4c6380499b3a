"""SFT step throughput on one node: a randomly initialised Qwen2.5-VL (weights cannot be downloaded on the
GPU workers), the training engine of thyme_core.sft.loop (ZeRO-2, frozen vision tower, gradient
checkpointing, bf16, flash-attn 2 when installed else sdpa), sequences of Thyme's max length with one image of
Thyme's max_pixels. Prints tokens/s, peak memory and MFU, then one final JSON line.

Run by bench/gpu_sft.sh (torchrun). `--size tiny` runs the same path on CPU in seconds (a smoke test).
MFU counts model FLOPs only: 6 x trainable LM parameters per token + causal attention (6 x layers x hidden x
seq per token, fwd+bwd), + 2 x vision parameters per patch (forward only: frozen); recomputation from
gradient checkpointing is not counted, as usual.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

SIZES = {  # Qwen2.5-VL 3B / 7B text and vision shapes
    "3b": dict(text=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                         num_key_value_heads=2, vocab_size=151936),
               vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048)),
    "7b": dict(text=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                         num_key_value_heads=4, vocab_size=152064),
               vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584)),
    "tiny": dict(text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=1024),
                 vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64)),
}


def build_model(size: str):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    shape = SIZES[size]
    head_dim = shape["text"]["hidden_size"] // shape["text"]["num_attention_heads"]
    quarter = head_dim // 8
    section = [head_dim // 2 - 2 * (3 * quarter // 2), 3 * quarter // 2, 3 * quarter // 2]
    vocab = shape["text"]["vocab_size"]
    text = dict(shape["text"], rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": section},
                max_position_embeddings=32768, tie_word_embeddings=False,
                bos_token_id=vocab - 6, eos_token_id=vocab - 5, pad_token_id=vocab - 6)
    cfg = Qwen2_5_VLConfig(text_config=text, vision_config=dict(shape["vision"], fullatt_block_indexes=[7, 15, 23, 31]),
                           image_token_id=vocab - 4, video_token_id=vocab - 3, vision_start_token_id=vocab - 2,
                           vision_end_token_id=vocab - 1, tie_word_embeddings=False)
    with tempfile.TemporaryDirectory() as folder:  # save + load: the loader picks dtype and attention
        Qwen2_5_VLForConditionalGeneration(cfg).save_pretrained(folder)
        from thyme_core.model import load_model

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return load_model(folder, dtype=torch.float32, device=device), cfg


def synthetic_batch(cfg, seq: int, pixels: int, device):
    """One sequence of `seq` tokens holding one image of about `pixels` pixels; labels on the text."""
    side = int(pixels ** 0.5) // 28 * 28
    grid = torch.tensor([[1, side // 14, side // 14]])
    n_image = side // 14 * side // 14 // 4
    ids = torch.randint(0, cfg.text_config.vocab_size - 8, (1, seq))
    ids[0, 10] = cfg.vision_start_token_id
    ids[0, 11: 11 + n_image] = cfg.image_token_id
    ids[0, 11 + n_image] = cfg.vision_end_token_id
    labels = ids.clone()
    labels[0, : 12 + n_image] = -100
    patches = torch.randn(int(grid.prod()), 3 * 2 * 14 * 14)
    batch = dict(input_ids=ids, labels=labels, attention_mask=torch.ones_like(ids), pixel_values=patches,
                 image_grid_thw=grid, mm_token_type_ids=(ids == cfg.image_token_id).long())
    return {k: v.to(device) for k, v in batch.items()}, int(grid.prod())


def model_flops_per_step(model, cfg, seq: int, patches: int) -> float:
    text = cfg.text_config
    lm = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
    vision = sum(p.numel() for p in model.model.visual.parameters())
    attention = 6 * text.num_hidden_layers * text.hidden_size * seq  # causal: half of 12 L h s
    return (6 * lm + attention) * seq + 2 * vision * patches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="7b")
    ap.add_argument("--seq", type=int, default=10240, help="tokens per sequence (Thyme max length)")
    ap.add_argument("--max-pixels", type=int, default=3_211_264, help="image size (Thyme max_pixels)")
    ap.add_argument("--steps", type=int, default=6, help="measured steps (after 2 warm-up steps)")
    ap.add_argument("--deepspeed", default="zero2")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="per-GPU dense bf16 peak (H100/H200 SXM)")
    args = ap.parse_args()

    import deepspeed

    from thyme_core.sft import loop
    from thyme_core.sft.config import SftConfig

    cuda = torch.cuda.is_available()
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
    world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    model, cfg = build_model(args.size)
    model.to(device).train()
    sft = SftConfig(global_batch=world, micro_batch=1, nproc=world, deepspeed=args.deepspeed,
                    gradient_checkpointing=True, learning_rate=1e-5, max_length=args.seq)
    engine = loop.build_engine(model, sft, total_steps=args.steps + 2, use_bf16=cuda)
    batch, patches = synthetic_batch(cfg, args.seq, args.max_pixels, device)
    n_labels = int((batch["labels"][:, 1:] != -100).sum())
    times = []
    for step in range(args.steps + 2):
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        # the loss sft/loop.py trains with: labelled positions only, LM head in chunks (no full fp32 logits)
        engine.backward(loop.micro_loss(engine, batch, sft.loss_chunk) / n_labels)
        engine.step()
        if cuda:
            torch.cuda.synchronize()
        if step >= 2:
            times.append(time.perf_counter() - started)
    step_s = sum(times) / len(times)
    flops = model_flops_per_step(model, cfg, args.seq, patches)
    peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    result = {"size": args.size, "gpus": world, "seq": args.seq, "image_tokens": patches // 4,
              "attention": model.config._attn_implementation, "zero": engine.zero_optimization_stage(),
              "step_s": round(step_s, 3), "tokens_per_s_per_gpu": round(args.seq / step_s, 1),
              "peak_memory_gib": round(peak_gib, 2) if cuda else None,
              "mfu": round(flops / step_s / (args.peak_tflops * 1e12), 4) if cuda else None}
    if rank == 0:
        print(json.dumps(result), flush=True)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
