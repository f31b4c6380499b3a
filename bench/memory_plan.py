"""The per-GPU memory plan of the 7B SFT and RL presets on 8 and 32 GPUs of 80 GB (thyme_core/model/memory.py:
Qwen2.5-VL-7B on the meta device, DeepSpeed's ZeRO estimators, activations with gradient checkpointing).

    .venv/bin/python bench/memory_plan.py [--gpu-gb 80]

Prints the markdown table (docs/benchmarks.md) and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("DS_ACCELERATOR", "cpu")


def main() -> int:
    from thyme_core.model.memory import markdown, preset_plans, qwen25vl_7b

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu-gb", type=float, default=80.0)
    args = ap.parse_args()
    shape = qwen25vl_7b()
    rows = preset_plans(gpu_gb=args.gpu_gb)
    print(f"Qwen2.5-VL-7B: {shape.total / 1e9:.3f} B parameters, vision {shape.vision / 1e9:.3f} B, "
          f"largest layer {shape.largest_layer / 1e6:.0f} M\n")
    print(markdown(rows))
    print(json.dumps({"bench": "memory_plan", "params": shape.total, "vision_params": shape.vision,
                      "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
