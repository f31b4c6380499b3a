"""Peak CPU memory of one SFT micro-batch's loss + backward: the full-logits HF loss (what sft/loop.py did)
against the chunked loss over labelled positions (model/forward.labelled_nll_sum, what it does now).

The model is the tiny Qwen2.5-VL's shape with Qwen2.5-VL-7B's vocabulary (152,064 rows), so the logits
dominate as they do at 7B: T x 152064 fp32 logits are 0.6 MB per token. Each variant runs in its own
process; the figure is the rise of the peak resident set (ru_maxrss) over the step, after the model and the
inputs exist. Both losses must agree to 1e-5 (relative).

    .venv/bin/python bench/sft_loss_memory.py [--tokens 4096] [--chunk 1024]

Prints one line per variant and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

os.environ.setdefault("DS_ACCELERATOR", "cpu")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(mode: str, tokens: int, chunk: int) -> dict:
    import torch

    from thyme_core.model import tiny
    from thyme_core.model.forward import IGNORE, labelled_nll_sum

    tiny.SHAPES["bench"] = dict(tiny.SHAPES["tiny"], vocab_size=152064)
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(tiny.tiny_config(tiny.build_tokenizer(), "bench")).float().train()
    ids = torch.randint(10, 400, (1, tokens))
    labels = ids.clone()
    labels[:, : tokens // 5] = IGNORE  # the prompt: a fifth of the sequence carries no loss
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "mm_token_type_ids": torch.zeros_like(ids)}
    before = peak_mb()
    if mode == "full_logits":
        loss = model(**inputs, labels=labels).loss * int((labels[:, 1:] != IGNORE).sum())
    else:
        loss = labelled_nll_sum(model, inputs, labels, chunk)
    loss.backward()
    return {"mode": mode, "loss_sum": float(loss), "peak_rise_mb": round(peak_mb() - before, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--variant", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.tokens, args.chunk)))
        return 0
    results = {}
    for mode in ("full_logits", "chunked"):
        out = subprocess.run([sys.executable, __file__, "--variant", mode, "--tokens", str(args.tokens),
                              "--chunk", str(args.chunk)], capture_output=True, text=True, check=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{mode:12s} peak rise {results[mode]['peak_rise_mb']:8.1f} MB  loss sum {results[mode]['loss_sum']:.6f}")
    full, chunked = results["full_logits"], results["chunked"]
    rel = abs(full["loss_sum"] - chunked["loss_sum"]) / abs(full["loss_sum"])
    print(json.dumps({"bench": "sft_loss_memory", "tokens": args.tokens, "chunk": args.chunk, "vocab": 152064,
                      "full_logits_peak_rise_mb": full["peak_rise_mb"], "chunked_peak_rise_mb": chunked["peak_rise_mb"],
                      "ratio": round(full["peak_rise_mb"] / max(chunked["peak_rise_mb"], 1e-9), 2),
                      "loss_rel_diff": rel}))
    return 0 if rel < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
