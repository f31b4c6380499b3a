"""One GRPO-ATS step: rollouts -> rewards -> group advantages -> teacher-forced log-probs -> loss -> update.

The pieces are the tested ones: rollouts through the agent loop (rollout.py), rewards by registry name
(rewards.py, judge optional), advantages and the clipped loss with the k3 KL (grpo.py), the update and the
ranks (update.py). What this adds:

- the training forward pass over a whole trajectory: the compact ids expanded to one pad per image token,
  every image of the trajectory (the prompt's and each fed-back one) with its grid, and `mm_token_type_ids`,
  built by the code generation uses (`backends.hf.model_inputs`), so the M-RoPE positions are the ones
  generation used. Log-probs are at temperature 1 for every model token, code tokens sampled at 0 included
  (grpo.py says why), in chunks (logprobs.py) so a long trajectory never holds its full fp32 logits; the
  mask is the ledger's (1 = sampled by the policy).
- old_logp: the rollout policy's log-probs. The rollout engine holds the same weights (the same module
  in-process, or synced after every update: sync.py), so they are the trainer's own: with several inner steps
  from one no-grad forward before the first update; with one (the default) the first inner step's log-probs,
  detached (ratio 1, the same update without a second forward). KL is 0 while the policy equals the reference.
- ref_logp: the frozen initial policy (`frozen_copy`, or a ZeRO-3 inference engine), skipped when beta is 0
  and for the zero-weight padding passes (below) unless the reference is partitioned (ZeRO-3: its forward is
  a collective every rank must run as often as the others).
- dropped: groups with a missing reward (grpo.group_advantages), and with `mask_limited` the trajectories
  that hit a limit. Sequences are forwarded one at a time (batch of one: trajectories differ in images and
  length) and their gradients accumulate; each loss is scaled by world / (kept sequences on every rank), so
  the update is grpo.policy_loss's mean over all kept sequences whatever the number of ranks.
- ranks: each rank rolls out its own prompts (whole groups, so advantages stay local) and every rank runs
  the same number of forward/backward passes (ZeRO-3 gathers parameters inside each forward, ZeRO-2 reduces
  inside each backward: a rank that ran fewer would hang the others); a rank with fewer kept sequences
  pads with a zero-weighted pass over one of its own. Rank 0 gathers every rollout for the catalog.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from thyme_core.base.errors import ThymeError
from thyme_core.rl.grpo import GroupAdvantages, GrpoLossConfig, group_advantages, policy_loss
from thyme_core.rl.logprobs import sequence_logprobs
from thyme_core.rl.rewards import RewardConfig, Scores, get_reward
from thyme_core.rl.rollout import RLPrompt, Rollout, RolloutConfig, loss_keep, rollout_timed
from thyme_core.rl.update import Learner
from thyme_core.base.presets import setting as _f

# (compact ids, images in pad order) -> model inputs (input_ids expanded, pixel values, grids, mm_token_type_ids)
InputsFor = Callable[[list, list], dict]


@dataclass(frozen=True)
class StepConfig:
    rewards: tuple[str, ...] = _f(("combined",), "reward names (rewards.REWARDS), summed; any missing: missing")
    inner_steps: int = _f(1, "optimizer steps on one batch of rollouts (> 1: the ratio moves off 1)")
    max_grad_norm: float = _f(1.0, "gradient clipping norm (0: no clipping)")
    logprob_chunk: int = _f(1024, "positions per chunk of the training log-probs (logprobs.py)")
    loss: GrpoLossConfig = field(default_factory=GrpoLossConfig, metadata={"help": "clip range, beta, adv eps"})
    reward: RewardConfig = field(default_factory=RewardConfig, metadata={"help": "reward weights"})

    def __post_init__(self):
        if self.inner_steps < 1 or self.max_grad_norm < 0 or not self.rewards or self.logprob_chunk < 1:
            raise ThymeError("inner_steps >= 1, max_grad_norm >= 0, logprob_chunk >= 1 and at least one reward "
                             "are required")
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


def model_token_mask(r: Rollout) -> torch.Tensor:
    """(T-1,) bool: True where token t+1 of the expanded trajectory was sampled by the policy."""
    return torch.tensor(r.trajectory.ledger.expanded().mask[1:], dtype=torch.bool)


def trajectory_logprobs(model, inputs_for: InputsFor, r: Rollout, chunk: int = 1024
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp, mask), both (T-1,) over the expanded trajectory: logp[t] = log p(token t+1 | tokens <= t) at
    temperature 1; mask[t] True where token t+1 was sampled by the policy."""
    ledger = r.trajectory.ledger
    inputs = inputs_for(list(ledger.ids), r.images)
    ids = inputs["input_ids"]
    mask = model_token_mask(r)
    if ids.shape[1] != len(mask) + 1:
        raise ThymeError(f"{r.trajectory.sample.sample_id}: inputs of {ids.shape[1]} tokens for a ledger of "
                         f"{len(mask) + 1}")
    logp = sequence_logprobs(model, inputs, chunk)
    return logp, mask.to(logp.device)


def score_rollouts(rollouts: list[Rollout], names, judge=None, config: RewardConfig | None = None) -> Scores:
    """The sum of the named rewards per rollout; None (with the first reason) when any of them is missing.
    `parts`: the components the named rewards computed (rewards.Scores), the first name's where two give one."""
    completions = [r.completion for r in rollouts]
    kwargs = {"solution": [r.prompt.solution for r in rollouts], "question": [r.prompt.question for r in rollouts]}
    totals: list[float | None] = [0.0] * len(rollouts)
    reasons = [""] * len(rollouts)
    parts: list[dict] = [{} for _ in rollouts]
    for name in names:
        scores = get_reward(name)(completions, judge=judge, config=config, **kwargs)
        reasons_of = getattr(scores, "reasons", [""] * len(scores))
        for i, got in enumerate(getattr(scores, "parts", [{}] * len(scores))):
            parts[i] = {**got, **parts[i]}
        for i, (value, reason) in enumerate(zip(scores, reasons_of)):
            if totals[i] is None:
                continue
            if value is None:
                totals[i], reasons[i] = None, reason or "missing_reward"
            else:
                totals[i] += value
    return Scores(totals, reasons, parts)


def grpo_update(learner: Learner, inputs_for: InputsFor, rollouts: list[Rollout], advantages: torch.Tensor,
                keep: list[bool], config: StepConfig) -> tuple[list[dict[str, float]], dict[int, torch.Tensor], float]:
    """`inner_steps` updates over the kept rollouts of every rank: (inner metrics, summed over ranks; this
    rank's old_logp by rollout index; grad norm). A collective: every rank calls it, kept rollouts or not."""
    ranks = learner.ranks
    kept = [i for i, k in enumerate(keep) if k and bool(model_token_mask(rollouts[i]).any())]
    passes = ranks.max(len(kept))
    total = int(ranks.sum([len(kept)])[0])
    if total == 0:
        return [], {}, 0.0
    # every rank runs `passes` forwards; the padding ones (weight 0) reuse a local rollout
    order = [(i, 1.0) for i in kept] + [(kept[0] if kept else 0, 0.0)] * (passes - len(kept))
    # a partitioned (ZeRO-3) reference gathers its weights inside every forward: then every rank must run the
    # same number of them, padding included; a whole copy (or beta 0) skips the padding passes' reference
    ref_order = order if _collective(learner.reference) else order[:len(kept)]
    old, ref, masks = {}, {}, {}
    with torch.no_grad():
        if config.inner_steps > 1:  # with one inner step the behaviour policy IS the current one: ratio 1
            for i, _ in order:
                old[i], masks[i] = trajectory_logprobs(learner.policy, inputs_for, rollouts[i], config.logprob_chunk)
        if config.loss.beta > 0:
            for i, _ in ref_order:
                ref[i], masks[i] = trajectory_logprobs(learner.reference, inputs_for, rollouts[i],
                                                       config.logprob_chunk)
    padding_loss = dataclasses.replace(config.loss, beta=0.0)  # its loss is weighted 0: only the backward counts
    scale = ranks.world / total  # DeepSpeed averages gradients over ranks
    inner, grad_norm = [], 0.0
    for step in range(config.inner_steps):
        learner.update.begin()
        # loss, pg_loss (sequence means, summed), then token-weighted ratio, clip fraction, kl, and tokens
        sums = [0.0] * 6
        for n, (i, weight) in enumerate(order):
            learner.update.micro(last=n == len(order) - 1)
            logp, masks[i] = trajectory_logprobs(learner.policy, inputs_for, rollouts[i], config.logprob_chunk)
            if step == 0 and i not in old:
                old[i] = logp.detach()  # one inner step: the rollout policy's log-probs, from this very pass
            loss, m = policy_loss(logp[None], old[i][None], ref[i][None] if weight and i in ref else None,
                                  masks[i][None], advantages[i:i + 1].to(logp.device),
                                  config.loss if weight else padding_loss)
            learner.update.backward(loss * (weight * scale))
            if weight:
                tokens = int(masks[i].sum())
                row = [loss.item(), m["pg_loss"], m["ratio_mean"] * tokens, m["clip_fraction"] * tokens,
                       m["kl_mean"] * tokens, tokens]
                sums = [a + b for a, b in zip(sums, row)]
        grad_norm = learner.update.step()
        loss_sum, pg_sum, ratio, clip, kl, tokens = ranks.sum(sums)
        inner.append({"loss": loss_sum / total, "pg_loss": pg_sum / total, "ratio_mean": ratio / max(tokens, 1),
                      "clip_fraction": clip / max(tokens, 1), "kl_mean": kl / max(tokens, 1),
                      "sequences": float(total), "tokens": tokens})
    return inner, {i: old[i] for i in kept}, grad_norm


def _collective(model) -> bool:
    """True for a ZeRO-3 engine: its forward all-gathers partitioned weights (a collective)."""
    stage = getattr(model, "zero_optimization_stage", None)
    return bool(stage and stage() == 3)


def grpo_step(agent, learner: Learner, inputs_for: InputsFor, prompts: list[RLPrompt],
              rollout_config: RolloutConfig, config: StepConfig | None = None, judge=None) -> StepResult:
    """One GRPO-ATS step over this rank's `prompts`. `agent` (rollout.make_agent) must generate with the
    policy's current weights: the same module, or an engine synced after every update (sync.py).
    On rank 0 the result holds every rank's rollouts (in rank order) and the step's metrics; elsewhere only
    this rank's rollouts, and metrics of those."""
    config = config or StepConfig()
    rollouts, timing = rollout_timed(agent, prompts, rollout_config)
    rewards = score_rollouts(rollouts, config.rewards, judge, config.reward)
    adv = group_advantages(list(rewards), rollout_config.group_size, rewards.reasons, config.loss.adv_eps)
    keep = [bool(k) and lim for k, lim in zip(adv.keep.tolist(), loss_keep(rollouts, rollout_config))]
    t0 = time.perf_counter()
    inner, old, grad_norm = grpo_update(learner, inputs_for, rollouts, adv.advantages, keep, config)
    train_s = time.perf_counter() - t0
    local = StepResult({}, rollouts, rewards, adv, keep, old, inner)
    # on several nodes, rank 0's home is not this rank's: the images its rollouts fed back travel with them
    carried = fed_back_images(rollouts) if learner.ranks.multi_node and not learner.ranks.is_main else {}
    parts = learner.ranks.gather((rollouts, list(rewards), rewards.reasons, adv, keep, timing, rewards.parts,
                                  carried))
    if parts is not None:
        for p in parts:
            keep_images(agent.home, p[7])
    result = merge_results(local, parts) if parts is not None else local
    result.metrics = _metrics(result.rollouts, result.rewards, result.advantages, result.keep, inner, grad_norm)
    timings = [p[5] for p in parts] if parts else [timing]
    wall = max(t.wall_s for t in timings)  # the ranks roll out side by side
    result.metrics.update(
        rollout_s=wall, train_s=train_s, ranks=float(learner.ranks.world),
        rollouts_per_s=sum(t.rollouts for t in timings) / wall if wall > 0 else 0.0,
        engine_wait_share=sum(t.engine_wait_s for t in timings) / max(sum(t.wall_s for t in timings), 1e-9))
    return result


def fed_back_images(rollouts: list[Rollout]) -> dict[str, bytes]:
    """The images these rollouts' code fed back, by home-relative path (as the catalog rows name them)."""
    out: dict[str, bytes] = {}
    for r in rollouts:
        for e in r.trajectory.executions:
            for im in e.images:
                if im.ref and im.ref not in out:
                    out[im.ref] = Path(im.path).read_bytes()
    return out


def keep_images(home, images: dict[str, bytes]) -> None:
    """Store another node's fed-back images in this home, each checked against the content address its
    path names (images/ab/<sha256>.<ext>), so node 0's catalog rows and the viewer find every rollout's image."""
    import hashlib

    from thyme_core.base.fsio import write_once

    for ref, data in images.items():
        parts = Path(ref).parts
        if len(parts) != 3 or parts[0] != "images" or Path(ref).stem != hashlib.sha256(data).hexdigest():
            raise ThymeError(f"a rank sent an image under {ref!r} that is not its content address")
        write_once(home.root / ref, data, home.tmp_dir)


def merge_results(local: StepResult, parts: list[tuple]) -> StepResult:
    """Rank 0's view of a step: every rank's rollouts, rewards (with their reasons and parts), advantages and
    keep flags, in rank order (whole groups per rank, so the group layout survives). old_logp stays this rank's."""
    if len(parts) == 1:
        return local
    rollouts = [r for p in parts for r in p[0]]
    rewards = Scores([x for p in parts for x in p[1]], [x for p in parts for x in p[2]],
                     [x for p in parts for x in p[6]])
    advs = [p[3] for p in parts]
    dropped: dict[str, int] = {}
    for a in advs:
        for k, v in a.dropped.items():
            dropped[k] = dropped.get(k, 0) + v
    adv = GroupAdvantages(torch.cat([a.advantages for a in advs]), torch.cat([a.keep for a in advs]), dropped,
                          sum(a.zero_variance for a in advs), sum(a.groups for a in advs))
    return StepResult({}, rollouts, rewards, adv, [k for p in parts for k in p[4]], local.old_logp, local.inner)


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
