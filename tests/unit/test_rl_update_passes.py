"""No wasted forward passes in a GRPO update, and the same update without them.

- one inner step: no extra no-grad forward for the old log-probs (the first inner step's own, detached);
- zero-weight padding passes (a rank with fewer kept sequences than another) compute no reference
  log-probs (only a partitioned ZeRO-3 reference must run them: its forward is a collective);
and the update is the plain mean GRPO loss's gradient (SGD at lr 1, no clipping: the weight change IS minus
the gradient), computed here by hand from the same log-probs.
"""

from __future__ import annotations

import pytest
import torch

from thyme_core.agent.backends.hf import TransformersBackend
from thyme_core.agent.backends.scripted import ScriptedBackend
from thyme_core.base.ranks import Ranks
from thyme_core.rl.grpo import GrpoLossConfig, policy_loss
from thyme_core.rl.rollout import RLPrompt, RolloutConfig, make_agent, rollout
from thyme_core.rl.step import StepConfig, frozen_copy, grpo_update, trajectory_logprobs
from thyme_core.rl.update import Learner, TorchUpdate
from tests.fakes import RL_QUESTION as QUESTION, red_png as image_bytes

RESPONSES = {"0": "<think>Red.</think>\n<answer>A</answer>", "1": "<think>Blue, I think.</think>\n<answer>B</answer>"}


class Counting:
    """A model wrapper that counts its forward passes (model/forward.unwrap sees through it)."""

    def __init__(self, module):
        self.module, self.calls = module, 0

    def __call__(self, **kwargs):
        self.calls += 1
        return self.module(**kwargs)


class OneMorePass(Ranks):
    """One process that answers as if another rank had one more kept sequence: one padding pass here."""

    def max(self, value: int) -> int:
        return value + 1


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from thyme_core.base.home import DataHome

    home = DataHome(tmp_path_factory.mktemp("passes")).ensure()
    hf = TransformersBackend.load(None, home)
    scripted = ScriptedBackend(RESPONSES, hf.codec)  # the tiny model's tokens, no generation needed
    rcfg = RolloutConfig(group_size=2, max_length=1200, max_new_tokens=200, isolation="none")  # no code runs
    rollouts = rollout(make_agent(scripted, home, rcfg),
                       [RLPrompt("p0", image_bytes(), QUESTION, "A")], rcfg)
    return hf, rollouts


def hand_gradient(model, reference, inputs_for, rollouts, adv, beta):
    """The mean over sequences of the GRPO loss at ratio 1, by hand; its gradient by name."""
    model.zero_grad(set_to_none=True)
    losses = []
    for i, r in enumerate(rollouts):
        logp, mask = trajectory_logprobs(model, inputs_for, r)
        with torch.no_grad():
            ref, _ = trajectory_logprobs(reference, inputs_for, r)
        loss, _ = policy_loss(logp[None], None, ref[None], mask[None], adv[i:i + 1], GrpoLossConfig(beta=beta))
        losses.append(loss)
    torch.stack(losses).mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("ranks", [Ranks(), OneMorePass()], ids=["one_rank", "with_padding_pass"])
def test_one_inner_step_skips_the_old_and_padding_reference_passes_with_the_same_update(setup, ranks):
    hf, rollouts = setup
    torch.manual_seed(0)
    model = frozen_copy(hf.hf_model).train().requires_grad_(True)
    reference = frozen_copy(model)
    adv = torch.tensor([1.0, -1.0])
    want = hand_gradient(model, reference, hf.model_inputs, rollouts, adv, beta=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    policy, ref = Counting(model), Counting(reference)
    update = TorchUpdate(model, torch.optim.SGD(model.parameters(), lr=1.0), max_grad_norm=0.0)
    inner, old, _ = grpo_update(Learner(policy, ref, update, ranks), hf.model_inputs, rollouts, adv,
                                [True, True], StepConfig(inner_steps=1, loss=GrpoLossConfig(beta=0.5)))
    padding = 1 if isinstance(ranks, OneMorePass) else 0
    assert policy.calls == 2 + padding  # one forward per pass: no old-log-prob pass
    assert ref.calls == 2  # never for a padding pass
    assert inner[0]["ratio_mean"] == pytest.approx(1.0) and set(old) == {0, 1}
    for name, g in want.items():
        torch.testing.assert_close(before[name] - model.get_parameter(name).detach(), g, rtol=1e-4, atol=1e-7)


def test_several_inner_steps_still_take_the_old_log_probs_first(setup):
    hf, rollouts = setup
    model = frozen_copy(hf.hf_model).train().requires_grad_(True)
    policy = Counting(model)
    update = TorchUpdate(model, torch.optim.SGD(model.parameters(), lr=1e-2), max_grad_norm=0.0)
    inner, _, _ = grpo_update(Learner(policy, None, update), hf.model_inputs, rollouts, torch.tensor([1.0, -1.0]),
                              [True, True], StepConfig(inner_steps=2, loss=GrpoLossConfig(beta=0.0)))
    assert policy.calls == 2 + 2 * 2  # the no-grad old pass, then two inner steps
    assert inner[0]["ratio_mean"] == pytest.approx(1.0) and inner[1]["ratio_mean"] != pytest.approx(1.0)
