"""An RL run: policy + frozen reference, plain torch AdamW, N GRPO-ATS steps, checkpoints and resume.

Keyed like SFT runs (train/launch.py) by (prompt ids, config hash, code version): <home>/runs/rl/<key>/ holds
config.json, run.json, prompts.jsonl, metrics.jsonl (one line per step), checkpoints/step-<N>.pt (policy,
optimizer and step; the newest is kept), final/ (Hugging Face weights, tokenizer and processor files copied
from the start model) and DONE (the steps it finished). A run whose DONE covers max_steps is skipped; an
unfinished one (killed, or asked for more steps) resumes from its newest checkpoint. The reference policy is
always the start model, so a resumed run measures its KL against the same weights.

One process, the transformers backend generating with the policy's own weights (so no weight sync); every
step's rollouts go to the catalog (store.py). Step s uses prompts [s*P, (s+1)*P) of the id-ordered list,
cycling, and samples with seed + s, so a resumed step redoes exactly what the killed one would have.
Not here yet: DeepSpeed ZeRO-3 and a vLLM rollout engine (issue 7's GPU part).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from thyme_core.errors import ThymeError
from thyme_core.fsio import atomic_dir, atomic_write_bytes
from thyme_core.home import DataHome
from thyme_core.model import resolve_model_path
from thyme_core.rl import store
from thyme_core.rl.config import RlConfig
from thyme_core.rl.data import load_prompts
from thyme_core.rl.rollout import RLPrompt

REPO = Path(__file__).resolve().parents[2]
_CODE_DIRS = ("thyme_core/rl", "thyme_core/agent", "thyme_core/agent/backends", "thyme_core/model")
_WEIGHTS = (".safetensors", ".bin", ".pt", ".safetensors.index.json", ".bin.index.json")


@dataclass(frozen=True)
class RlRunSpec:
    run_dir: Path
    key: str
    config: RlConfig  # `model` resolved to a folder
    prompts: list[RLPrompt]
    done: bool


def rl_dir(home: DataHome) -> Path:
    return home.root / "runs" / "rl"


def code_version() -> str:
    h = hashlib.sha256()
    for folder in _CODE_DIRS:
        for path in sorted((REPO / folder).glob("*.py")):
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:16]


def steps_done(run_dir: Path) -> int:
    done = Path(run_dir) / "DONE"
    return json.loads(done.read_text())["steps"] if done.exists() else 0


def _identity(path: Path, home: DataHome) -> str:
    try:
        return home.relative(path)
    except ValueError:
        return str(Path(path).resolve())


def prepare_run(home: DataHome, cfg: RlConfig, prompts: list[RLPrompt] | None = None) -> RlRunSpec:
    """Load the prompts (data.load_prompts unless given), key the run, write its description once."""
    prompts = prompts if prompts is not None else load_prompts(home, cfg.split, cfg.limit)
    if not prompts:
        raise ThymeError("an RL run needs at least one prompt")
    prompts = sorted(prompts, key=lambda p: p.prompt_id)
    model = resolve_model_path(cfg.model or None, home)
    ids = hashlib.sha256("\n".join(p.prompt_id for p in prompts).encode()).hexdigest()[:16]
    parts = [ids, cfg.replace(model=_identity(model, home)).config_hash(), code_version()]
    key = hashlib.sha256(":".join(parts).encode()).hexdigest()[:16]
    run_dir = rl_dir(home) / key
    resolved = cfg.replace(model=str(model))
    if not (run_dir / "run.json").exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "config.json", resolved.to_json().encode())
        atomic_write_bytes(run_dir / "prompts.jsonl", "".join(
            json.dumps({"id": p.prompt_id, "question": p.question, "solution": p.solution,
                        "image": p.image if isinstance(p.image, str) else
                        str(p.image) if isinstance(p.image, Path) else f"<{len(p.image)} bytes>"}) + "\n"
            for p in prompts).encode())
        atomic_write_bytes(run_dir / "run.json", json.dumps(
            {"home": str(home.root), "key": key, "prompts": parts[0], "config": parts[1], "code": parts[2]}).encode())
    return RlRunSpec(run_dir, key, resolved, prompts, steps_done(run_dir) >= cfg.max_steps)


def batch(prompts: list[RLPrompt], step: int, size: int) -> list[RLPrompt]:
    """Prompts of step `step` (1-based): the next `size` of the list, cycling (no repeats when size <= len)."""
    start = (step - 1) * size
    return [prompts[(start + i) % len(prompts)] for i in range(min(size, len(prompts)))]


def judge_from_env():
    """The LLM judge at THYME_JUDGE_URL; without one a StaticJudge(0.0): only rule-matched answers score,
    and consistency counts nothing (documented in the README)."""
    import os

    from thyme_core.rl.judge import Judge, JudgeConfig, StaticJudge

    return Judge(JudgeConfig.from_env()) if os.environ.get("THYME_JUDGE_URL") else StaticJudge(0.0)


def _device(name: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((Path(run_dir) / "checkpoints").glob("step-*.pt"))
    return found[-1] if found else None


def save_checkpoint(run_dir: Path, step: int, policy, optimizer) -> Path:
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"step": step, "policy": policy.state_dict(), "optimizer": optimizer.state_dict()}, buf)
    path = Path(run_dir) / "checkpoints" / f"step-{step:06d}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    for old in path.parent.glob("step-*.pt"):
        if old != path:
            old.unlink()
    return path


def save_final(home: DataHome, spec: RlRunSpec, policy) -> Path:
    """final/: the start model's tokenizer and processor files, then the policy's weights and config."""
    final = spec.run_dir / "final"
    with atomic_dir(final, home.tmp_dir) as stage:
        for f in Path(spec.config.model).iterdir():
            if f.is_file() and not f.name.endswith(_WEIGHTS):
                shutil.copy2(f, stage / f.name)
        policy.save_pretrained(stage)
    return final


def train(home: DataHome, spec: RlRunSpec, judge=None, steer: Callable | None = None,
          on_metrics: Callable[[dict], None] | None = None) -> dict:
    """Run (or resume) `spec` to max_steps; returns a summary. `steer(backend)` may add logits processors
    (tests steer the random tiny model through scripts); `on_metrics` sees each step's record."""
    import torch

    from thyme_core.agent.backends.hf import TransformersBackend
    from thyme_core.model import load_model_and_processor
    from thyme_core.rl.rollout import make_agent
    from thyme_core.rl.step import frozen_copy, grpo_step

    cfg, run_dir = spec.config, spec.run_dir
    summary = {"key": spec.key, "run_dir": str(run_dir), "final": str(run_dir / "final"), "skipped": spec.done}
    if spec.done:
        return {**summary, "steps": steps_done(run_dir), "resumed_from": None}
    judge = judge if judge is not None else judge_from_env()
    device = _device(cfg.device)
    torch.manual_seed(cfg.seed)
    model, processor = load_model_and_processor(cfg.model, home, device=device, min_pixels=cfg.min_pixels,
                                                max_pixels=cfg.max_pixels)
    backend = TransformersBackend(model, processor, device=device, name=_identity(Path(cfg.model), home))
    if steer:
        steer(backend)
    policy = backend.hf_model
    reference = frozen_copy(policy) if cfg.beta > 0 else None
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    start, ckpt = 0, latest_checkpoint(run_dir)
    if ckpt:
        state = torch.load(ckpt, map_location=device, weights_only=False)
        policy.load_state_dict(state["policy"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
    step_cfg = cfg.step_config()
    for step in range(start + 1, cfg.max_steps + 1):
        rcfg = cfg.rollout_config(step)
        agent = make_agent(backend, home, rcfg, run_id=store.run_id(spec.key))
        torch.manual_seed(cfg.seed + step)
        result = grpo_step(agent, policy, reference, optimizer, batch(spec.prompts, step, cfg.prompts_per_step),
                           rcfg, step_cfg, judge)
        store.publish_step(home, spec.key, step, result, rcfg.group_size, "transformers", backend.model)
        if step % cfg.save_steps == 0 or step == cfg.max_steps:
            save_checkpoint(run_dir, step, policy, optimizer)
        record = {"step": step, **{k: float(v) for k, v in result.metrics.items()}}
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if on_metrics:
            on_metrics(record)
    save_final(home, spec, policy)
    atomic_write_bytes(run_dir / "DONE", json.dumps({"steps": cfg.max_steps}).encode())
    atomic_write_bytes(rl_dir(home) / "LATEST", spec.key.encode())
    return {**summary, "steps": cfg.max_steps, "resumed_from": start if ckpt else None}


def read_metrics(run_dir: Path) -> list[dict]:
    """One record per step, the last written (a resumed run may rewrite a step it redid)."""
    path = Path(run_dir) / "metrics.jsonl"
    by_step = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        rec = json.loads(line)
        by_step[rec["step"]] = rec
    return [by_step[s] for s in sorted(by_step)]


def format_metrics(m: dict) -> str:
    return (f"RL step {m['step']}: reward {m['reward_mean']:.3f} code {m['code_rate']:.2f} "
            f"code ok {m['code_ok_rate']:.2f} zero-var groups {m['zero_variance_groups']:.0f} "
            f"kept {m['kept']:.0f} updated {m['updated']:.0f} rollout {m['rollout_s']:.1f}s train {m['train_s']:.1f}s")


def report_markdown(spec: RlRunSpec) -> str:
    lines = [f"# RL run `{spec.key}`", "", f"- run folder: `{spec.run_dir}`", f"- model: `{spec.config.model}`",
             f"- prompts {len(spec.prompts)}, {spec.config.prompts_per_step} per step x {spec.config.group_size}",
             "", "| step | reward | code rate | code ok | zero-var groups | kept | kl |", "|---|---|---|---|---|---|---|"]
    for m in read_metrics(spec.run_dir):
        lines.append(f"| {m['step']} | {m['reward_mean']:.3f} | {m['code_rate']:.2f} | {m['code_ok_rate']:.2f} | "
                     f"{m['zero_variance_groups']:.0f} | {m['kept']:.0f} | {m.get('kl_mean', 0.0):.4g} |")
    return "\n".join(lines)
