"""The GRPO objective from tensors: one test per guarantee, and a small case computed by hand."""

import doctest
import math

import pytest
import torch

from thyme_core.base.errors import ThymeError
from thyme_core.rl import grpo
from thyme_core.rl.grpo import GrpoLossConfig, group_advantages, policy_loss, token_logprobs


def batch(seed=0, b=3, t=5):
    g = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(b, t, generator=g) * 3).requires_grad_()
    mask = torch.tensor([[0, 1, 1, 0, 1], [0, 0, 1, 1, 1], [1, 1, 1, 1, 0]], dtype=torch.bool)[:b, :t]
    return logp, mask, torch.tensor([1.0, -0.5, 0.25])[:b]


def test_ratio_one_and_kl_zero_when_all_policies_agree():
    logp, mask, adv = batch()
    loss, m = policy_loss(logp, logp.detach().clone(), logp.detach().clone(), mask, adv)
    assert m["ratio_mean"] == pytest.approx(1.0) and m["kl_mean"] == pytest.approx(0.0, abs=1e-7)
    assert m["clip_fraction"] == 0.0
    # at ratio 1 the loss is -mean_i A_i (each sequence's token mean of -A_i)
    assert loss.item() == pytest.approx(-adv.mean().item(), abs=1e-6)
    same, _ = policy_loss(logp, None, logp.detach().clone(), mask, adv)  # old None: the current policy
    assert same.item() == pytest.approx(loss.item())


def test_masked_tokens_get_exactly_zero_gradient_even_when_garbage():
    logp, mask, adv = batch()
    garbage = logp.detach().clone()
    garbage[~mask] = -math.inf  # what padding or an image placeholder may hold
    logp = garbage.requires_grad_()
    old = logp.detach() + 0.05 * torch.randn_like(logp)
    ref = logp.detach() - 0.1
    old[~mask], ref[~mask] = float("nan"), math.inf
    loss, _ = policy_loss(logp, old, ref, mask, adv)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.equal(logp.grad[~mask], torch.zeros(int((~mask).sum())))
    assert (logp.grad[mask] != 0).all()


def test_clipping_engages_beyond_eps_only():
    mask = torch.ones(2, 1, dtype=torch.bool)
    adv = torch.tensor([1.0, -1.0])
    old = torch.zeros(2, 1)
    # ratio 1.5 with A > 0 and ratio 0.5 with A < 0: both clipped, the clipped term is constant: no gradient
    logp = torch.log(torch.tensor([[1.5], [0.5]])).requires_grad_()
    loss, m = policy_loss(logp, old, None, mask, adv, GrpoLossConfig(beta=0.0))
    loss.backward()
    assert m["clip_fraction"] == 1.0 and torch.equal(logp.grad, torch.zeros(2, 1))
    assert loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    # inside the range (ratio 1.1 / 0.9): not clipped, gradient flows
    logp = torch.log(torch.tensor([[1.1], [0.9]])).requires_grad_()
    loss, m = policy_loss(logp, old, None, mask, adv, GrpoLossConfig(beta=0.0))
    loss.backward()
    assert m["clip_fraction"] == 0.0 and (logp.grad != 0).all()
    # ratio 1.5 with A < 0 is the pessimistic side: min() keeps the unclipped term, and it is not "clipped"
    logp = torch.log(torch.tensor([[1.5]])).requires_grad_()
    loss, m = policy_loss(logp, old[:1], None, mask[:1], torch.tensor([-1.0]), GrpoLossConfig(beta=0.0))
    assert loss.item() == pytest.approx(1.5) and m["clip_fraction"] == 0.0


def test_hand_computed_case():
    # two sequences; the second has a prompt token (mask 0) in front
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -1.5]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[-1.1, -2.0], [-0.5, -1.0]], dtype=torch.float64)
    ref = torch.tensor([[-1.0, -1.8], [-9.0, -1.2]], dtype=torch.float64)
    mask = torch.tensor([[1, 1], [0, 1]])
    adv = torch.tensor([2.0, -1.0], dtype=torch.float64)
    cfg = GrpoLossConfig(clip_eps=0.2, beta=0.01)
    # seq 0, tok 0: ratio e^0.1 = 1.105171 (inside), pg = -2 * 1.105171; kl(0) = 0
    # seq 0, tok 1: ratio 1, pg = -2; delta = 0.2: kl = e^0.2 - 0.2 - 1 = 0.021403
    # seq 1, tok 1: ratio e^-0.5 = 0.606531 < 0.8 with A < 0: clipped, pg = -min(-0.606531, -0.8) = 0.8;
    #               delta = 0.3: kl = e^0.3 - 0.3 - 1 = 0.049859
    kl01, kl11 = math.exp(0.2) - 1.2, math.exp(0.3) - 1.3
    seq0 = ((-2 * math.exp(0.1)) + (-2 + 0.01 * kl01)) / 2
    seq1 = 0.8 + 0.01 * kl11
    loss, m = policy_loss(logp, old, ref, mask, adv, cfg)
    assert loss.item() == pytest.approx((seq0 + seq1) / 2, abs=1e-6)
    assert m["ratio_mean"] == pytest.approx((math.exp(0.1) + 1 + math.exp(-0.5)) / 3, abs=1e-6)
    assert m["clip_fraction"] == pytest.approx(1 / 3, abs=1e-6)
    assert m["kl_mean"] == pytest.approx((kl01 + kl11) / 3, abs=1e-6)
    loss.backward()
    # d/dlogp: seq 0 tok 0: -2 * ratio / 2 / 2 sequences; tok 1: (-2 + 0.01 * (1 - e^0.2)) / 4; seq 1 tok 1:
    # clipped pg has no gradient, kl gives 0.01 * (1 - e^0.3) / 1 / 2
    want = torch.tensor([[-math.exp(0.1) / 2, (-2 + 0.01 * (1 - math.exp(0.2))) / 4],
                         [0.0, 0.01 * (1 - math.exp(0.3)) / 2]], dtype=torch.float64)
    assert torch.allclose(logp.grad, want, atol=1e-6)


def test_sequences_without_model_tokens_do_not_dilute_the_mean():
    logp, mask, adv = batch()
    mask = mask.clone()
    mask[2] = False  # e.g. a trajectory masked out because it hit a limit
    loss, m = policy_loss(logp, None, None, mask, adv, GrpoLossConfig(beta=0.0))
    assert m["sequences"] == 2.0 and loss.item() == pytest.approx(-(1.0 - 0.5) / 2)


@pytest.mark.parametrize("rewards, size, expected", [
    ([1.0, 0.0], 2, [0.5 / math.sqrt(0.5), -0.5 / math.sqrt(0.5)]),  # mean 0.5, sample std sqrt(0.5)
    ([2.0, 0.0, 1.0, 1.0], 4, [1 / math.sqrt(2 / 3), -1 / math.sqrt(2 / 3), 0.0, 0.0]),  # std sqrt(2/3)
    ([0.5, 0.5, 0.5], 3, [0.0, 0.0, 0.0]),  # zero variance: advantage exactly 0, not 0/eps noise
    ([1.0], 1, [0.0]),  # a group of one has no baseline
])
def test_group_advantages(rewards, size, expected):
    got = group_advantages(rewards, size, eps=0.0 if size > 1 and len(set(rewards)) > 1 else 1e-4)
    assert got.advantages.tolist() == pytest.approx(expected, abs=1e-6)
    assert got.keep.all()


def test_zero_variance_and_missing_groups_are_counted():
    rewards = [1.0, 1.0, 0.0, 2.0, None, 1.0, 0.0, None, 1.5, 1.5, None, None]
    reasons = ["", "", "", "", "judge_timeout", "", "", "judge_malformed", "", "", "judge_timeout", "judge_http_error"]
    got = group_advantages(rewards, 2, reasons)
    assert got.groups == 6 and got.zero_variance == 2  # groups 0 and 4
    assert got.dropped == {"judge_timeout": 2, "judge_malformed": 1}  # a group counts once, by its first missing
    assert got.keep.tolist() == [True, True, True, True, False, False, False, False, True, True, False, False]
    assert got.advantages[~got.keep].abs().sum() == 0
    assert group_advantages([None, 1.0], 2).dropped == {grpo.MISSING_REWARD: 1}  # no reasons given
    with pytest.raises(ThymeError, match="groups of 4"):
        group_advantages([1.0] * 6, 4)


def test_advantages_are_normalised_per_group():
    got = group_advantages([0.0, 1.0, 2.0, 100.0, 200.0, 300.0], 3, eps=0.0).advantages
    assert torch.allclose(got[:3], got[3:])  # the scale of a group's rewards does not matter


def test_token_logprobs_at_temperature_one():
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]])
    got = token_logprobs(logits, torch.tensor([[0, 2]]))
    want = torch.log_softmax(logits, -1)[0, [0, 1], [0, 2]]
    assert torch.allclose(got[0], want) and got[0, 1].item() == pytest.approx(-math.log(3))


@pytest.mark.parametrize("kwargs", [{"clip_eps": 0.0}, {"clip_eps": 1.0}, {"beta": -0.1}, {"adv_eps": 0.0},
                                    {"norm_tokens": -1}])
def test_loss_config_rejects(kwargs):
    with pytest.raises(ThymeError):
        GrpoLossConfig(**kwargs)


def test_norm_tokens_pushes_every_token_alike_whatever_the_sequence_length():
    # two failed answers (advantage -1), one 2 model tokens long, one 8: by default each is its own token mean,
    # so each token of the long one is pushed down 4x less; with norm_tokens every token gets the same push
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, :2], mask[1, :] = True, True
    adv = torch.tensor([-1.0, -1.0])
    grads = {}
    for n in (0, 8):
        logp = torch.full((2, 8), -1.0, requires_grad=True)
        loss, _ = policy_loss(logp, None, None, mask, adv, GrpoLossConfig(beta=0.0, norm_tokens=n))
        loss.backward()
        grads[n] = logp.grad
    assert grads[0][0, 0].item() == pytest.approx(4 * grads[0][1, 0].item())
    assert grads[8][0, 0].item() == pytest.approx(grads[8][1, 0].item()) == pytest.approx(1 / (2 * 8))
    assert grads[8][0, 2:].abs().sum().item() == 0.0  # masked tokens still get nothing


def test_shape_and_reference_checks_and_doctests():
    logp, mask, adv = batch()
    with pytest.raises(ThymeError, match="ref_logp"):
        policy_loss(logp, None, None, mask, adv)  # beta 0.01 without a reference
    with pytest.raises(ThymeError, match="shapes"):
        policy_loss(logp, None, None, mask[:, :3], adv, GrpoLossConfig(beta=0.0))
    assert doctest.testmod(grpo).failed == 0


def test_a_huge_log_ratio_gives_a_bounded_kl_and_finite_gradients():
    # the policy put a token 100 nats below the reference: unclamped, exp(100) is inf in fp32 and the
    # gradient NaN; clamped (d to 20, kl to 10) the token costs beta * KL_MAX and the rest of the sequence
    # still trains
    logp = torch.tensor([[-100.0, -1.0, -2.0]], requires_grad=True)
    ref = torch.tensor([[0.0, -1.0, -2.0]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert math.isinf(float(torch.exp(ref - logp.detach()).max()))
    cfg = GrpoLossConfig(beta=0.5)
    loss, m = policy_loss(logp, None, ref, mask, torch.tensor([1.0]), cfg)
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(logp.grad).all())
    assert m["kl_mean"] == pytest.approx(grpo.KL_MAX / 3)
    assert float(logp.grad[0, 1]) != 0.0  # an ordinary token keeps its policy gradient
