"""An RL run's steps: policy + frozen reference, N GRPO-ATS steps, checkpoints and resume, in one of two modes
(started by launch.py: `prepare_run` keys the folder, `train` runs it; only this module and entry.py make the
run key's code version).

Keyed like SFT runs (runs/folder.py) by (prompts, config hash, code version): <home>/runs/rl/<key>/ holds
config.json, run.json, prompts.jsonl (id, question, solution, image path; byte images are put in the home's
image store first), metrics.jsonl (one line per step), checkpoints/, final/ (Hugging Face weights, tokenizer
and processor files) and DONE (the steps it finished). A run whose DONE covers max_steps is skipped; an
unfinished one (killed, or asked for more steps) resumes from its newest checkpoint. The reference policy is
always the start model, so a resumed run measures its KL against the same weights.

- nproc 0 (in-process): one process, plain torch AdamW, the transformers backend generating with the policy's
  own weights (nothing to sync); checkpoints/step-<N>.pt (policy, optimizer, step; the newest is kept).
- nproc N >= 1: `torchrun -m thyme_core.rl.entry RUN_DIR` (entry.py): a DeepSpeed engine (ZeRO-2/3) per rank,
  a rollout engine per rank (transformers, or vLLM on GPU) synced from the engine after every update, each
  rank rolling out its share of the step's prompts; DeepSpeed checkpoints as in SFT (runs/checkpoint.py),
  launched as SFT's are (runs/remote.launch): with a store in run.json every complete checkpoint is pushed
  there in the background, and a run folder with none (an empty home on another worker) starts from the
  store's newest (runs/remote.restore). With nnodes > 1 each node runs this on its own home (`launch.train(...,
  nodes)`), meeting at node 0's rendezvous (runs/rendezvous.py); each node pushes its part of every checkpoint;
  node 0 holds the records, final/ and DONE (a node told at the rendezvous that node 0's run is finished skips).
  The in-process mode keeps its checkpoint in the home only.
Both run the same step loop (`run_steps`); every step's rollouts go to the catalog (store.py, rank 0). Step s
uses prompts [s*P, (s+1)*P) of the id-ordered list, cycling, and samples with seed + s, so a resumed step
redoes what the killed one would have (on the same device; GPU kernels are not bit-reproducible).

Test and experiment hooks: THYME_HOOKS=module:object (base/hooks.py: `steer(backend)`, `judge()`,
`after_step(step)`); the environment reaches the torchrun ranks, where objects passed to `train` cannot.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from thyme_core.base import hooks, versioning
from thyme_core.base.errors import ThymeError
from thyme_core.base.fsio import atomic_dir, atomic_write_bytes
from thyme_core.base.home import DataHome
from thyme_core.runs import folder
from thyme_core.runs import metrics as run_metrics
from thyme_core.rl import store
from thyme_core.rl.config import RlConfig
from thyme_core.rl.rollout import RLPrompt
from thyme_core.base import tfevents

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
    """Both modes' code: the in-process steps (this module) and the ranks (entry.py), import closures. Not the
    launcher (launch.py): how ranks are started and checkpoints reach a store changes no step's result."""
    return versioning.code_version(__name__, "thyme_core.rl.entry")


steps_done = folder.steps_done


def read_spec(run_dir: Path) -> tuple[DataHome, RlRunSpec]:
    """The run a folder describes (what the torchrun ranks start from)."""
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    cfg = RlConfig.from_json((run_dir / "config.json").read_text())
    prompts = [RLPrompt(d["id"], d["image"], d["question"], d["solution"])
               for d in map(json.loads, (run_dir / "prompts.jsonl").read_text().splitlines())]
    return DataHome(info["home"]), RlRunSpec(run_dir, info["key"], cfg, prompts, steps_done(run_dir) >= cfg.max_steps)


def batch(prompts: list[RLPrompt], step: int, size: int) -> list[RLPrompt]:
    """Prompts of step `step` (1-based): the next `size` of the list, cycling (no repeats when size <= len)."""
    start = (step - 1) * size
    return [prompts[(start + i) % len(prompts)] for i in range(min(size, len(prompts)))]


def rank_share(prompts: list[RLPrompt], rank: int, world: int) -> list[RLPrompt]:
    """This rank's contiguous share of a step's prompts (sizes differ by at most one; whole groups each)."""
    if len(prompts) < world:
        raise ThymeError(f"{len(prompts)} prompts per step for {world} ranks: every rank needs at least one")
    base, extra = divmod(len(prompts), world)
    start = rank * base + min(rank, extra)
    return prompts[start:start + base + (rank < extra)]


def load_hooks():
    """(steer, judge factory) from THYME_HOOKS (base/hooks.py); (None, None) when unset."""
    return hooks.hook("steer"), hooks.hook("judge")


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


def run_steps(home: DataHome, spec: RlRunSpec, agent_backend, learner, inputs_for, judge, start: int,
              save: Callable[[int], None], after_update: Callable[[], dict] | None = None,
              on_metrics: Callable[[dict], None] | None = None) -> None:
    """Steps start+1 .. max_steps, the same in both modes: rollouts of this rank's share, the update, weight
    sync (`after_update` on every rank, only when the step updated; it returns sync_weights' figures), then
    on rank 0 the catalog and the step's record (before the checkpoint: a step killed in between is redone
    and its record rewritten), then the checkpoint (`save(step)`, every rank)."""
    import torch

    from thyme_core.rl.rollout import make_agent
    from thyme_core.rl.step import grpo_step

    cfg, ranks = spec.config, learner.ranks
    step_cfg = cfg.step_config()
    for step in range(start + 1, cfg.max_steps + 1):
        rcfg = cfg.rollout_config(step)
        agent = make_agent(agent_backend, home, rcfg, run_id=store.run_id(spec.key))
        torch.manual_seed(cfg.seed + step)
        prompts = rank_share(batch(spec.prompts, step, cfg.prompts_per_step), ranks.rank, ranks.world)
        result = grpo_step(agent, learner, inputs_for, prompts, rcfg, step_cfg, judge)
        if result.inner and after_update:
            synced = after_update()
            result.metrics.update(sync_tensors=synced["tensors"], sync_s=synced["seconds"])
        if ranks.is_main:
            store.publish_step(home, spec.key, step, result, rcfg.group_size, agent_backend.name,
                               agent_backend.model)
            record = {"step": step, **{k: float(v) for k, v in result.metrics.items()}}
            run_metrics.append(spec.run_dir, record)
            tfevents.append_scalars(spec.run_dir, step, record, "rl")
            if on_metrics:
                on_metrics(record)
        if step % cfg.save_steps == 0 or step == cfg.max_steps:
            save(step)


def finish(home: DataHome, spec: RlRunSpec) -> None:
    folder.mark_done(spec.run_dir, spec.config.max_steps)
    folder.set_latest(rl_dir(home), spec.key)


def train_in_process(home: DataHome, spec: RlRunSpec, judge, steer, on_metrics) -> int | None:
    import torch

    from thyme_core.agent.backends.hf import TransformersBackend
    from thyme_core.model import load_model_and_processor
    from thyme_core.rl.step import frozen_copy
    from thyme_core.rl.update import Learner, TorchUpdate

    cfg, run_dir = spec.config, spec.run_dir
    if judge is None:
        hook_steer, hook_judge = load_hooks()
        judge = hook_judge() if hook_judge else judge_from_env()
        steer = steer or hook_steer
    device = _device(cfg.device)
    torch.manual_seed(cfg.seed)
    model, processor = load_model_and_processor(cfg.model, home, device=device, min_pixels=cfg.min_pixels,
                                                max_pixels=cfg.max_pixels)
    backend = TransformersBackend(model, processor, device=device, name=folder.identity(cfg.model, home))
    if steer:
        steer(backend)
    policy = backend.hf_model
    if cfg.freeze_vision:
        from thyme_core.runs.engine import freeze_vision

        freeze_vision(policy)
    reference = frozen_copy(policy) if cfg.beta > 0 else None
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    start, ckpt = 0, latest_checkpoint(run_dir)
    if ckpt:
        state = torch.load(ckpt, map_location=device, weights_only=False)
        policy.load_state_dict(state["policy"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
    learner = Learner(policy, reference, TorchUpdate(policy, optimizer, cfg.max_grad_norm))
    run_steps(home, spec, backend, learner, backend.model_inputs, judge, start,
              lambda step: save_checkpoint(run_dir, step, policy, optimizer), on_metrics=on_metrics)
    save_final(home, spec, policy)
    finish(home, spec)
    return start if ckpt else None


def read_metrics(run_dir: Path) -> list[dict]:
    """One record per step, the last written (a resumed run may rewrite a step it redid)."""
    return run_metrics.read_metrics(run_dir)


def format_metrics(m: dict) -> str:
    if "reward_mean" not in m:  # an event record (e.g. resumed)
        return json.dumps(m)
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
