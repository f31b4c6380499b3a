"""Every collective gets its tensors on the device an NCCL process group needs, over one SFT step and one RL
step (a CPU tensor handed to NCCL is an error only a GPU run would show: SFT crashed so after its first step).

How, without a GPU: a one-rank gloo group, with `base.ranks.comm_device` declaring an NCCL rank's device
(cuda:0) and `base.ranks.comm_tensor` replaced by a recorder that notes the device each tensor was made for
(and keeps it on the CPU, where gloo can reduce it). Every tensor collective of torch.distributed is wrapped:
it fails the test when a tensor reaches it that was not made for cuda:0, e.g. one built with a bare
`torch.tensor(...)` as SFT's step totals were (checked: this test fails on that code).
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from thyme_core.base import ranks
from tests.unit.test_train_scaling import free_port, load_tiny, tiny_setup

NCCL_DEVICE = torch.device("cuda", 0)
TENSOR_COLLECTIVES = ("all_reduce", "reduce", "broadcast", "all_gather", "all_gather_into_tensor", "gather",
                      "scatter", "reduce_scatter", "reduce_scatter_tensor", "all_to_all", "all_to_all_single")


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


@pytest.fixture
def nccl_discipline(monkeypatch, tmp_path):
    """(calls, made): every tensor collective as (name, device its tensor was made for, or its real device)."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    made: dict[int, tuple[torch.Tensor, torch.device]] = {}

    def comm_tensor(values, dtype, device):
        t = torch.tensor(values, dtype=dtype)  # the CPU stands in for `device`
        made[id(t)] = (t, device)  # holds t, so its id is not reused
        return t

    def made_for(t: torch.Tensor) -> torch.device:
        entry = made.get(id(t))
        return entry[1] if entry is not None and entry[0] is t else t.device

    calls: list[tuple[str, torch.device]] = []
    for name in TENSOR_COLLECTIVES:
        def wrapped(*args, _real=getattr(dist, name), _name=name, **kwargs):
            for t in _tensors(list(args) + list(kwargs.values())):
                calls.append((_name, made_for(t)))
            return _real(*args, **kwargs)
        monkeypatch.setattr(dist, name, wrapped)
    monkeypatch.setattr(ranks, "comm_device", lambda: NCCL_DEVICE)
    monkeypatch.setattr(ranks, "comm_tensor", comm_tensor)
    try:
        yield calls
    finally:
        dist.destroy_process_group()


def test_the_recorder_catches_a_cpu_tensor(nccl_discipline):
    dist.all_reduce(torch.zeros(3))
    ranks.DistRanks().sum([1.0, 2.0])
    assert nccl_discipline == [("all_reduce", torch.device("cpu")), ("all_reduce", NCCL_DEVICE)]


class FakeEngine:
    """What sft.loop.train_step needs of a DeepSpeed engine: forward, backward, step, the learning rate."""

    def __init__(self, model):
        self.module = model

    def __call__(self, **kwargs):
        return self.module(**kwargs)

    def backward(self, loss):
        loss.backward()

    def step(self):
        pass

    def get_lr(self):
        return [1e-3]

    def get_global_grad_norm(self):
        return None


def test_one_sft_step_reduces_on_the_rank_device(tmp_path, nccl_discipline):
    from thyme_core.sft import loop
    from thyme_core.sft.batching import BatchPlan
    from thyme_core.sft.config import SftConfig

    folder, processor, examples = tiny_setup(tmp_path)
    cfg = SftConfig(global_batch=4, micro_batch=2, gradient_checkpointing=False)
    ctx = loop.Context(cfg, tmp_path, examples, BatchPlan([[0, 1, 2, 3]], ["image"], 0), processor, 0, 1,
                       torch.device("cpu"))
    metrics = loop.train_step(FakeEngine(load_tiny(folder)), ctx, 0)
    assert metrics["label_tokens"] == sum(e.n_label_tokens for e in examples)
    assert nccl_discipline and all(device == NCCL_DEVICE for _, device in nccl_discipline), nccl_discipline


def test_one_rl_step_reduces_on_the_rank_device(home, nccl_discipline):
    from thyme_core.agent.backends.hf import TransformersBackend
    from thyme_core.rl.judge import StaticJudge
    from thyme_core.rl.rollout import RLPrompt, RolloutConfig, make_agent
    from thyme_core.rl.step import StepConfig, frozen_copy, grpo_step
    from thyme_core.rl.update import Learner, Ranks, TorchUpdate
    from tests.fakes import RL_QUESTION as QUESTION, red_png as image_bytes, steer

    torch.manual_seed(0)
    backend = TransformersBackend.load(None, home)
    steer(backend)
    policy = backend.hf_model
    learner = Learner(policy, frozen_copy(policy),
                      TorchUpdate(policy, torch.optim.SGD(policy.parameters(), lr=1e-3), 1.0), Ranks.from_dist())
    assert learner.ranks.world == 1 and learner.ranks.device == NCCL_DEVICE
    rcfg = RolloutConfig(group_size=2, max_length=1200, max_new_tokens=400, isolation="none")  # our script's code
    result = grpo_step(make_agent(backend, home, rcfg), learner, backend.model_inputs,
                       [RLPrompt("p0", image_bytes(), QUESTION, "A")], rcfg, StepConfig(), judge=StaticJudge(1.0))
    assert result.metrics["updated"] == 1
    assert {name for name, _ in nccl_discipline} == {"all_reduce"}
    assert all(device == NCCL_DEVICE for _, device in nccl_discipline), nccl_discipline
