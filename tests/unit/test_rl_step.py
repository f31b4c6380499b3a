"""One GRPO-ATS step on the tiny Qwen2.5-VL (transformers, CPU) with the real sandbox.

The random tiny model cannot write code, so a LogitsProcessor steers each group member through its own
script inside the real `generate` call (as in test_agent_hf.py): member 0 answers right, member 1 wrong, both
crop the image in the sandbox and get it fed back. Text is sampled at temperature 1, code at 0 (GRPO-ATS).
Checked: rewards, ratio 1 and KL 0 on the first inner step, the training forward reproduces the log-probs
generation saw (fed-back image included), masked tokens get zero gradient, the policy moves and the
reference does not, a judge outage drops the group instead of scoring 0. Limits are checked with the scripted backend (no model).
"""


import pytest
import torch

from tests.fakes import RL_CODE as CODE, RL_QUESTION as QUESTION, red_png as image_bytes, steer
from thyme_core.agent.backends.hf import TransformersBackend
from thyme_core.agent.backends.scripted import ScriptedBackend
from thyme_core.rl.grpo import GrpoLossConfig, group_advantages, policy_loss
from thyme_core.rl.judge import StaticJudge
from thyme_core.rl import store
from thyme_core.rl.rewards import (RewardConfig, Scores, accuracy_reward, consistency_reward, format_reward)
from thyme_core.rl.rollout import RLPrompt, RolloutConfig, loss_keep, make_agent, rollout
from thyme_core.rl.step import (StepConfig, StepResult, frozen_copy, grpo_step, grpo_update, merge_results,
                                score_rollouts, trajectory_logprobs)
from thyme_core.rl.update import Learner, TorchUpdate

@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    from thyme_core.base.home import DataHome

    return DataHome(tmp_path_factory.mktemp("rl-home")).ensure()


def test_one_grpo_step_on_the_tiny_model_with_the_sandbox(tiny_home):
    check_one_step(tiny_home, "cpu", atol=1e-4)


def check_one_step(tiny_home, device: str, atol: float):
    """The whole step's checks on `device` (tests/gpu runs them on CUDA); `atol` for log-probs of generation
    against the training forward."""
    torch.manual_seed(0)
    backend = TransformersBackend.load(None, tiny_home, device=device, trace=True)
    steer(backend)
    policy = backend.hf_model
    reference = frozen_copy(policy)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    rcfg = RolloutConfig(group_size=2, max_length=1200, max_new_tokens=400)
    agent = make_agent(backend, tiny_home, rcfg)  # the process-wide real sandbox pool
    config = StepConfig(inner_steps=2, loss=GrpoLossConfig(beta=0.01))
    learner = Learner(policy, reference, TorchUpdate(policy, optimizer, config.max_grad_norm))
    result = grpo_step(agent, learner, backend.model_inputs, [RLPrompt("p0", image_bytes(), QUESTION, "A")],
                       rcfg, config, judge=StaticJudge(1.0))

    # trajectories ran real code and got the crop back as an image, text at 1.0 and code at 0
    for r in result.rollouts:
        assert [(e.status, e.fed_back) for e in r.trajectory.executions] == [("ok", "image")]
        assert len(r.images) == 2 and r.trajectory.stop_reason == "answer" and r.limit == ""
    # combined reward: right + consistent + format = 1 * 1.5 + 0.5; wrong = format only
    assert list(result.rewards) == [2.0, 0.5]
    assert result.keep == [True, True] and result.advantages.advantages[0] > 0 > result.advantages.advantages[1]
    first, second = result.inner
    assert first["ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    assert first["kl_mean"] == pytest.approx(0.0, abs=1e-7)
    assert abs(second["ratio_mean"] - 1.0) > 1e-6 and second["kl_mean"] > 0  # the first update moved the policy
    m = result.metrics
    assert m["reward_mean"] == 1.25 and m["code_rate"] == 1.0 and m["code_ok_rate"] == 1.0 and m["updated"] == 1

    # the training forward (old_logp) reproduces the log-probs generation saw, fed-back image included
    # (the members generate in lockstep, so the calls interleave: take each member's in order)
    produced, forwarded = [], []
    for i, r in enumerate(result.rollouts):
        calls = [c for c in backend.calls if c["sample_id"] == r.trajectory.sample.sample_id]
        produced += [torch.log_softmax(torch.stack(c["logits"]).float().cpu(), -1)
                     .gather(1, torch.tensor(c["generated"])[:, None])[:, 0] for c in calls]
        mask = torch.tensor(r.trajectory.ledger.expanded().mask[1:], dtype=torch.bool)
        forwarded.append(result.old_logp[i].cpu()[mask])
    torch.testing.assert_close(torch.cat(forwarded), torch.cat(produced), rtol=0, atol=atol)

    # masked tokens (prompt, sandbox text, both images) get exactly zero gradient; model tokens do not
    r = result.rollouts[0]
    logp, mask = trajectory_logprobs(policy, backend.model_inputs, r)
    loss, _ = policy_loss(logp[None], None, None, mask[None],  # old None: ratio 1, no token clipped
                          result.advantages.advantages[:1].to(logp.device), GrpoLossConfig(beta=0.0))
    (grad,) = torch.autograd.grad(loss, logp)
    assert bool((grad[~mask] == 0).all()) and bool((grad[mask] != 0).all())
    assert int((~mask).sum()) > sum(s.n_tokens for s in r.trajectory.ledger.images)

    # rewards by several names are summed; a judge outage is a missing reward and drops the whole group
    assert list(score_rollouts(result.rollouts, ("format", "accuracy"))) == [2.0, 1.0]
    missing = score_rollouts(result.rollouts, ("combined",), StaticJudge(None))
    assert list(missing) == [None, 0.5] and missing.reasons == ["judge_timeout", ""]
    dropped = group_advantages(list(missing), 2, missing.reasons)
    assert dropped.dropped == {"judge_timeout": 1} and not dropped.keep.any()
    inner, old, _ = grpo_update(learner, backend.model_inputs, result.rollouts, dropped.advantages,
                                dropped.keep.tolist(), config)
    assert inner == [] and old == {}  # nothing to learn from: no optimizer step

    # the policy moved, the reference did not
    after, ref = policy.state_dict(), reference.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(before[k], ref[k]) for k in before)


def test_limits_are_flagged_and_masked_out_not_punished(home):
    response = CODE.format("A")
    prompt = RLPrompt("p1", image_bytes(), QUESTION, "A")
    rounds = RolloutConfig(group_size=2, max_rounds=0)
    got = rollout(make_agent(ScriptedBackend(response), home, rounds), [prompt], rounds)
    assert [r.limit for r in got] == ["round_limit"] * 2 and not any(r.trajectory.executions for r in got)
    assert loss_keep(got, rounds) == [False, False]
    unmasked = RolloutConfig(group_size=2, max_rounds=0, mask_limited=False)
    assert loss_keep(got, unmasked) == [True, True]

    images = RolloutConfig(group_size=1, max_images=1)
    (r,) = rollout(make_agent(ScriptedBackend(response), home, images), [prompt], images)
    # the loop stops when the fed-back crop would be a second image: nothing appended, flagged, masked
    assert r.trajectory.stop_reason == "image_limit" and len(r.images) == 1 and r.limit == "image_limit"
    assert [e.fed_back for e in r.trajectory.executions] == ["none"]
    assert loss_keep([r], images) == [False]


def test_configs_reject_impossible_values():
    from thyme_core.base.errors import ThymeError

    with pytest.raises(ThymeError):
        RolloutConfig(group_size=0)
    with pytest.raises(ThymeError):
        StepConfig(rewards=("no_such_reward",))
    assert StepConfig(reward=RewardConfig(consistency_weight=0)).reward.consistency_weight == 0


@pytest.mark.parametrize("name, sign", [("combined", 1.0), ("combined_negated", -1.0)])
def test_a_steps_records_carry_the_reward_parts_each_reward_function_gives(home, name, sign):
    # two prompts of one response answering "A": right for p1, wrong for p2; one group per (fake) rank
    prompts = [RLPrompt("p1", image_bytes(), QUESTION, "A"), RLPrompt("p2", image_bytes(), QUESTION, "B")]
    rcfg = RolloutConfig(group_size=2)
    got = rollout(make_agent(ScriptedBackend(CODE.format("A")), home, rcfg), prompts, rcfg)
    judge, config = StaticJudge(1.0), RewardConfig(consistency_weight=0.5)
    completions, columns = [r.completion for r in got], {"question": [r.prompt.question for r in got]}
    fmt = format_reward(completions)
    acc = accuracy_reward(completions, [r.prompt.solution for r in got], judge=judge, **columns)
    cons = consistency_reward(completions, judge=judge, **columns)
    # consistency is asked only where accuracy > 0: NULL (not computed) elsewhere
    expected = [(f, a, c if a > 0 else None) for f, a, c in zip(fmt, acc, cons)]
    assert expected == [(1.0, 1.0, 1.0)] * 2 + [(1.0, 0.0, None)] * 2

    scores = score_rollouts(got, (name,), judge, config)
    assert list(scores) == [sign * 2.0] * 2 + [sign * 0.5] * 2  # the control negates the total, not its parts
    # the cross-rank merge (rank 0 gathers each rank's group) keeps every rollout's parts in rank order
    ranks = []
    for lo in (0, 2):
        part = Scores(scores[lo:lo + 2], scores.reasons[lo:lo + 2], scores.parts[lo:lo + 2])
        adv = group_advantages(list(part), 2, part.reasons)
        ranks.append((got[lo:lo + 2], list(part), part.reasons, adv, adv.keep.tolist(), None, part.parts))
    local = StepResult({}, got[:2], scores, ranks[0][3], ranks[0][4], {}, [])
    merged = merge_results(local, ranks)
    _, rows = store.rollout_records("k" * 16, 1, merged, group_size=2)
    assert [(r.reward_format, r.reward_accuracy, r.reward_consistency) for r in rows] == expected
    assert [r.reward for r in rows] == list(scores) and [r.group for r in rows] == [0, 0, 1, 1]


def test_reward_parts_are_only_the_components_the_named_rewards_computed(home):
    prompts = [RLPrompt("p1", image_bytes(), QUESTION, "B")]
    rcfg = RolloutConfig(group_size=1)
    got = rollout(make_agent(ScriptedBackend(CODE.format("A")), home, rcfg), prompts, rcfg)
    assert score_rollouts(got, ("format",)).parts == [{"format": 1.0}]
    assert score_rollouts(got, ("accuracy", "format")).parts == [{"accuracy": 0.0, "format": 1.0}]
    # no judge and w_cons 0: consistency not asked, so not computed
    parts = score_rollouts(got, ("combined",), None, RewardConfig(consistency_weight=0)).parts
    assert parts == [{"format": 1.0, "accuracy": 0.0, "consistency": None}]
