"""RL rollout throughput: rollouts per second and the share of time the engine waits on the sandbox.

    bash bench/gpu_rl.sh                       # GPU: random Qwen2.5-VL with the 7B shapes, bf16, transformers
    .venv/bin/python bench/gpu_rl.py --tiny    # CPU: the same with the tiny model (a smoke test, and the CPU row)

One GRPO-ATS step's rollouts (P prompts x G members, text at temperature 1 with top-p/top-k, code at 0) through
the agent loop with the real sandbox, measured two ways in the same process on the same model:
  sequential  the baseline: one trajectory after another (Agent.run_samples of one sample each), so the engine
              waits out every sandbox run
  lockstep    the candidate: every prompt x G in one lockstep batch (rl.rollout.rollout_timed): the sandbox runs of
              a step concurrent, each started as its round ends (the transformers backend does not batch, so its
              requests still go one at a time)
A random model writes no code, so each member is steered through a Thyme-style script by a LogitsProcessor
(backends.scripted.steer_through_scripts) inside the real `generate` call: crop and zoom a region of a
photo-like image with cv2, then enhance the zoomed crop with PIL, then answer; both outputs are fed back as
images. Both ways must give the same trajectories (checked). One warm-up trajectory runs first, unmeasured.
The engine waits whenever it is not inside a generate call: sandbox runs, storing images, feeding back.
The last line of stdout is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ZOOM = '''<think>The detail is small; zoom in on it.
<code>
```python
import cv2
img = cv2.imread(image_path)
h, w = img.shape[:2]
x1, y1 = int(w * {fx}), int(h * {fy})
crop = img[y1:y1 + h // 3, x1:x1 + w // 3]
zoomed = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
out = "/mnt/data/temp_processed_images/zoom_{g}.png"
cv2.imwrite(out, zoomed)
print(out)
```
</code>
<sandbox_output>zoom</sandbox_output>
Still faint; raise the contrast.
<code>
```python
from PIL import Image, ImageEnhance
sharp = ImageEnhance.Contrast(Image.open(out)).enhance(1.8)
sharp.save("/mnt/data/temp_processed_images/sharp_{g}.png")
print("/mnt/data/temp_processed_images/sharp_{g}.png")
```
</code>
<sandbox_output>sharp</sandbox_output>
It reads {answer}.</think>
<answer>{answer}</answer>'''


def photo(width: int, height: int, seed: int) -> bytes:
    """A photo-like JPEG: gradients, a pattern, a coloured box and mild noise (compresses like a photo)."""
    import io

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([xx / width * 200, yy / height * 180, (np.sin(xx / 90 + seed) * np.cos(yy / 70) + 1) * 100], -1)
    rgb += np.random.default_rng(seed).normal(0, 6, rgb.shape)
    rgb[height // 3: height // 2, width // 2: width * 2 // 3] = (230, 40, 40)
    buf = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def scripts(group: int) -> dict[str, str]:
    """One script per group member (keyed by member number), each zooming on its own region."""
    return {str(g): ZOOM.format(g=g, fx=0.1 + 0.5 * (g % 2), fy=0.1 + 0.15 * (g // 2 % 4), answer="ABCD"[g % 4])
            for g in range(group)}


def load_backend(tiny: bool, home, max_pixels: int):
    """A randomly initialised Qwen2.5-VL over the tiny tokenizer and processor, the same way for both sizes:
    the tiny shape in float32 on the CPU, or the 7B shape in bf16 on CUDA (fed images up to `max_pixels`)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from thyme_core.agent.backends.hf import TransformersBackend
    from thyme_core.model import ensure_tiny_model, load_processor, pick_attention
    from thyme_core.model.tiny import tiny_config

    size, device, dtype = ("tiny", "cpu", torch.float32) if tiny else ("7b", "cuda", torch.bfloat16)
    if tiny:
        torch.set_num_threads(1)  # as an engine on its own device would, leave the other cores to the sandbox
    processor = load_processor(ensure_tiny_model(home), max_pixels=None if tiny else max_pixels)
    config = tiny_config(processor.tokenizer, size)
    config._attn_implementation = pick_attention(device)
    torch.manual_seed(0)
    with torch.device(device):  # random init where it runs: seconds on a GPU, not minutes on the CPU
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    return TransformersBackend(model, processor, device=device, name=f"random-{size}"), size, device


def open_pool(wanted: str):
    """(pool, isolation): bubblewrap when it is installed and starts, else no isolation, with a warning."""
    from thyme_core.base.errors import ThymeError
    from thyme_core.sandbox import SandboxPool

    if wanted != "auto":
        return SandboxPool(isolation=wanted), wanted
    try:
        return SandboxPool(isolation="bwrap"), "bwrap"
    except ThymeError as exc:
        print(f"WARNING: the bubblewrap sandbox is unavailable ({exc}); running model code with isolation none "
              "(no isolation: this benchmark's own scripts only)", file=sys.stderr, flush=True)
        return SandboxPool(isolation="none"), "none"


def figures(timing) -> dict:
    return {"rollouts": timing.rollouts, "wall_s": round(timing.wall_s, 3),
            "rollouts_per_s": round(timing.rollouts_per_s, 4), "generate_s": round(timing.generate_s, 3),
            "sandbox_s": round(timing.sandbox_s, 3), "engine_wait_s": round(timing.engine_wait_s, 3),
            "engine_wait_share": round(timing.engine_wait_share, 4)}


def measure(agent, prompts, config, repeat: int):
    """((trajectories, timing) sequential, (rollouts, timing) lockstep), timings summed over `repeat` rounds
    that alternate which way goes first, so a drift in the machine's load hits both."""
    from thyme_core.rl.rollout import RolloutTiming, group_samples, rollout_timed

    seq_timing = lock_timing = RolloutTiming(0, 0.0, 0.0, 0.0, 0.0)
    sequential, lockstep = [], []
    for i in range(repeat):
        for way in (("sequential", "lockstep") if i % 2 == 0 else ("lockstep", "sequential")):
            if way == "sequential":
                sequential = []
                for sample in group_samples(agent, prompts, config):
                    (traj,), timing = agent.run_samples([sample])
                    sequential.append(traj)
                    seq_timing = seq_timing + RolloutTiming.of(timing)
            else:
                lockstep, timing = rollout_timed(agent, prompts, config)
                lock_timing = lock_timing + timing
    return (sequential, seq_timing), (lockstep, lock_timing)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="the tiny model on CPU instead of the 7B shape on CUDA")
    ap.add_argument("--prompts", type=int, default=2, help="P: prompts in the step")
    ap.add_argument("--group", type=int, default=4, help="G: members per prompt")
    ap.add_argument("--image", default="1600x1200", help="prompt image size (WxH), photo-like JPEG")
    ap.add_argument("--max-pixels", type=int, default=2_408_448, help="image area the 7B run feeds (Thyme RL)")
    ap.add_argument("--isolation", default="auto", choices=["auto", "bwrap", "none"])
    ap.add_argument("--repeat", type=int, default=1, help="measure both ways this many times, alternating order")
    args = ap.parse_args()

    import torch

    from thyme_core.agent.backends.scripted import steer_through_scripts
    from thyme_core.base.home import DataHome
    from thyme_core.rl.rollout import RLPrompt, RolloutConfig, make_agent, rollout_timed

    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --tiny for the CPU version")
    width, height = (int(v) for v in args.image.split("x"))
    pool, isolation = open_pool(args.isolation)
    with tempfile.TemporaryDirectory(prefix="thyme-gpu-rl-") as tmp, pool:
        home = DataHome(Path(tmp) / "home").ensure()
        started = time.perf_counter()
        backend, size, device = load_backend(args.tiny, home, args.max_pixels)
        load_s = time.perf_counter() - started
        backend.logits_processors = steer_through_scripts(scripts(args.group), backend.codec)
        config = RolloutConfig(group_size=args.group, max_rounds=3, max_length=16384, max_new_tokens=512)
        agent = make_agent(backend, home, config, pool=pool, run_id="bench")
        prompts = [RLPrompt(f"q{i}", photo(width, height, i), "What does the red sign say? A. B. C. D.", "A")
                   for i in range(args.prompts)]
        warm = replace(config, group_size=1)  # kernels, the sandbox template, the image store: unmeasured
        rollout_timed(make_agent(backend, home, warm, pool=pool, run_id="warm"), prompts[:1], warm)

        (sequential, seq_timing), (lockstep, lock_timing) = measure(agent, prompts, config, args.repeat)

    same = [t.ledger.ids for t in sequential] == [r.trajectory.ledger.ids for r in lockstep]
    ok = all([e.fed_back for e in r.trajectory.executions] == ["image", "image"] for r in lockstep)
    base, cand = figures(seq_timing), figures(lock_timing)
    tokens = sum(len(r.trajectory.ledger) for r in lockstep)
    result = {"model": size, "device": device, "dtype": str(backend.hf_model.dtype).replace("torch.", ""),
              "attention": backend.hf_model.config._attn_implementation, "isolation": isolation,
              "prompts": args.prompts, "group": args.group, "repeat": args.repeat, "image": args.image,
              "image_tokens_per_trajectory": sum(s.n_tokens for s in lockstep[0].trajectory.ledger.images),
              "tokens_per_trajectory": tokens // len(lockstep), "load_s": round(load_s, 1),
              "same_trajectories": same, "every_trajectory_fed_back_two_images": ok,
              "sequential": base, "lockstep": cand,
              "speedup_rollouts_per_s": round(cand["rollouts_per_s"] / base["rollouts_per_s"], 3),
              "python": platform.python_version(), "torch": torch.__version__}
    if device == "cuda":
        result["gpu"] = torch.cuda.get_device_name(0)
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    print(f"sequential: {base['rollouts_per_s']} rollouts/s, engine waits {base['engine_wait_share']:.1%}", flush=True)
    print(f"lockstep:   {cand['rollouts_per_s']} rollouts/s, engine waits {cand['engine_wait_share']:.1%}", flush=True)
    print(json.dumps(result), flush=True)
    if not (same and ok):
        raise SystemExit("the two ways gave different trajectories, or a script did not run as written")


if __name__ == "__main__":
    main()
