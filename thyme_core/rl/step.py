"""One GRPO-ATS step: rollouts -> rewards -> group advantages -> teacher-forced log-probs -> loss -> update.

The pieces are the tested ones: rollouts through the agent loop (rollout.py), rewards by registry name
(rewards.py, judge optional), advantages and the clipped loss with the k3 KL (grpo.py). What this adds:

- the training forward pass over a whole trajectory: the compact ids expanded to one pad per image token,
  every image of the trajectory (the prompt's and each fed-back one) with its grid, and `mm_token_type_ids`,
  built by the same code the transformers backend generates with (`TransformersBackend.model_inputs`), so the
  M-RoPE positions are the ones generation used. Log-probs are at temperature 1 for every model token, code
  tokens sampled at 0 included (grpo.py says why); the mask is the ledger's (1 = sampled by the policy).
- old_logp: the rollout policy's log-probs, from one no-grad forward before the first update (on CPU the
  rollout engine runs the policy's own weights, so this is the policy that sampled). The first inner step
  therefore has ratio 1, and KL 0 while the policy still equals the reference.
- ref_logp: a frozen copy of the initial policy (`frozen_copy`), skipped when beta is 0.
- dropped: groups with a missing reward (grpo.group_advantages), and with `mask_limited` the trajectories
  that hit a limit. Sequences are forwarded one at a time and their losses backpropagated at once (batch of
  one: trajectories differ in images and length), scaled so the sum is grpo.policy_loss's mean over sequences.

Not here yet: DeepSpeed ZeRO-3, weight sync to a separate rollout engine (vLLM), checkpoints.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from thyme_core.errors import ThymeError
from thyme_core.rl.grpo import GroupAdvantages, GrpoLossConfig, group_advantages, policy_loss, token_logprobs
from thyme_core.rl.rewards import RewardConfig, Scores, get_reward
from thyme_core.rl.rollout import RLPrompt, Rollout, RolloutConfig, loss_keep, rollout
from thyme_core.presets import setting as _f

# (compact ids, images in pad order) -> model inputs (input_ids expanded, pixel values, grids, mm_token_type_ids)
InputsFor = Callable[[list, list], dict]


@dataclass(frozen=True)
class StepConfig:
    rewards: tuple[str, ...] = _f(("combined",), "reward names (rewards.REWARDS), summed; any missing: missing")
    inner_steps: int = _f(1, "optimizer steps on one batch of rollouts (> 1: the ratio moves off 1)")
    max_grad_norm: float = _f(1.0, "gradient clipping norm (0: no clipping)")
    loss: GrpoLossConfig = field(default_factory=GrpoLossConfig, metadata={"help": "clip range, beta, adv eps"})
    reward: RewardConfig = field(default_factory=RewardConfig, metadata={"help": "reward weights"})

    def __post_init__(self):
        if self.inner_steps < 1 or self.max_grad_norm < 0 or not self.rewards:
            raise ThymeError("inner_steps >= 1, max_grad_norm >= 0 and at least one reward are required")
        for name in self.rewards:
            get_reward(name)


@dataclass
class StepResult:
    metrics: dict[str, float]
    rollouts: list[Rollout]
    rewards: Scores
    advantages: GroupAdvantages
    keep: list[bool]  # which rollouts carried loss
    old_logp: dict[int, torch.Tensor]  # rollout index -> (T-1,) rollout-policy log-probs (kept ones only)
    inner: list[dict[str, float]]  # the loss metrics of each inner step


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The reference policy: a copy that no optimizer sees and no gradient reaches."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


def trajectory_logprobs(model, inputs_for: InputsFor, r: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp, mask), both (T-1,) over the expanded trajectory: logp[t] = log p(token t+1 | tokens <= t) at
    temperature 1; mask[t] True where token t+1 was sampled by the policy."""
    ledger = r.trajectory.ledger
    expanded = ledger.expanded()
    inputs = inputs_for(list(ledger.ids), r.images)
    ids = inputs["input_ids"]
    if ids.shape[1] != len(expanded.ids):
        raise ThymeError(f"{r.trajectory.sample.sample_id}: inputs of {ids.shape[1]} tokens for a ledger of "
                         f"{len(expanded.ids)}")
    logits = model(**inputs).logits
    logp = token_logprobs(logits[:, :-1], ids[:, 1:])[0]
    mask = torch.tensor(expanded.mask[1:], dtype=torch.bool, device=logp.device)
    return logp, mask


def score_rollouts(rollouts: list[Rollout], names, judge=None, config: RewardConfig | None = None) -> Scores:
    """The sum of the named rewards per rollout; None (with the first reason) when any of them is missing."""
    completions = [r.completion for r in rollouts]
    kwargs = {"solution": [r.prompt.solution for r in rollouts], "question": [r.prompt.question for r in rollouts]}
    totals: list[float | None] = [0.0] * len(rollouts)
    reasons = [""] * len(rollouts)
    for name in names:
        scores = get_reward(name)(completions, judge=judge, config=config, **kwargs)
        reasons_of = getattr(scores, "reasons", [""] * len(scores))
        for i, (value, reason) in enumerate(zip(scores, reasons_of)):
            if totals[i] is None:
                continue
            if value is None:
                totals[i], reasons[i] = None, reason or "missing_reward"
            else:
                totals[i] += value
    return Scores(totals, reasons)


def grpo_update(policy, reference, optimizer, inputs_for: InputsFor, rollouts: list[Rollout],
                advantages: torch.Tensor, keep: list[bool], config: StepConfig
                ) -> tuple[list[dict[str, float]], dict[int, torch.Tensor], float]:
    """`inner_steps` optimizer steps over the kept rollouts: (inner metrics, old_logp by index, grad norm)."""
    kept = [i for i, k in enumerate(keep) if k]
    old, ref, masks = {}, {}, {}
    with torch.no_grad():
        for i in kept:
            old[i], masks[i] = trajectory_logprobs(policy, inputs_for, rollouts[i])
            if config.loss.beta > 0:
                ref[i], _ = trajectory_logprobs(reference, inputs_for, rollouts[i])
    kept = [i for i in kept if bool(masks[i].any())]
    inner, grad_norm = [], 0.0
    params = [p for p in policy.parameters() if p.requires_grad]
    for _ in range(config.inner_steps if kept else 0):
        optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {"loss": 0.0, "ratio_mean": 0.0, "clip_fraction": 0.0, "kl_mean": 0.0,
                                  "pg_loss": 0.0}
        tokens = 0
        for i in kept:
            logp, _ = trajectory_logprobs(policy, inputs_for, rollouts[i])
            loss, m = policy_loss(logp[None], old[i][None], ref[i][None] if i in ref else None, masks[i][None],
                                  advantages[i:i + 1].to(logp.device), config.loss)
            (loss / len(kept)).backward()
            n = int(masks[i].sum())
            tokens += n
            sums["loss"] += loss.item() / len(kept)
            sums["pg_loss"] += m["pg_loss"] / len(kept)
            for k in ("ratio_mean", "clip_fraction", "kl_mean"):
                sums[k] += m[k] * n
        for k in ("ratio_mean", "clip_fraction", "kl_mean"):
            sums[k] /= max(tokens, 1)
        if config.max_grad_norm > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
        optimizer.step()
        inner.append({**sums, "sequences": float(len(kept)), "tokens": float(tokens)})
    return inner, {i: old[i] for i in kept}, grad_norm


def grpo_step(agent, policy, reference, optimizer, prompts: list[RLPrompt], rollout_config: RolloutConfig,
              config: StepConfig | None = None, judge=None) -> StepResult:
    """One GRPO-ATS step. `agent` (rollout.make_agent) must generate with `policy` itself (the transformers
    backend over the same module): weight sync to a separate engine is not built yet."""
    config = config or StepConfig()
    backend = agent.backend
    if getattr(backend, "hf_model", None) is not policy:
        raise ThymeError("the agent must generate with the policy being trained (transformers backend over the "
                         "same model); syncing weights to another rollout engine is not supported yet")
    started = time.perf_counter()
    rollouts = rollout(agent, prompts, rollout_config)
    rollout_s = time.perf_counter() - started
    rewards = score_rollouts(rollouts, config.rewards, judge, config.reward)
    adv = group_advantages(list(rewards), rollout_config.group_size, rewards.reasons, config.loss.adv_eps)
    keep = [bool(k) and lim for k, lim in zip(adv.keep.tolist(), loss_keep(rollouts, rollout_config))]
    t0 = time.perf_counter()
    inner, old, grad_norm = grpo_update(policy, reference, optimizer, backend.model_inputs, rollouts,
                                        adv.advantages, keep, config)
    metrics = _metrics(rollouts, rewards, adv, keep, inner, grad_norm)
    metrics.update(rollout_s=rollout_s, train_s=time.perf_counter() - t0)
    return StepResult(metrics, rollouts, rewards, adv, keep, old, inner)


def _metrics(rollouts, rewards, adv, keep, inner, grad_norm) -> dict[str, float]:
    present = [r for r in rewards if r is not None]
    mean = sum(present) / len(present) if present else float("nan")
    with_code = [r for r in rollouts if r.trajectory.executions]
    ok = sum(1 for r in with_code if all(e.status == "ok" for e in r.trajectory.executions))
    out = {
        "reward_mean": mean,
        "reward_missing": float(len(rewards) - len(present)),
        "groups": float(adv.groups),
        "groups_dropped": float(sum(adv.dropped.values())),
        "zero_variance_groups": float(adv.zero_variance),
        "limited": float(sum(1 for r in rollouts if r.limit)),
        "kept": float(sum(keep)),
        "code_rate": len(with_code) / max(len(rollouts), 1),
        "code_ok_rate": ok / max(len(with_code), 1),
        "grad_norm": grad_norm,
        "updated": float(bool(inner)),
    }
    if inner:
        out.update({f"first_{k}": v for k, v in inner[0].items()})
        out.update(inner[-1])
    return out
