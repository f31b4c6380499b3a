"""The vLLM backend's contract with vLLM, checked against a hand-written stand-in for `vllm` (the real one
needs a GPU): compact prompt ids (one pad per image, vLLM expands them), images at their ledger sizes,
stop strings kept in the output, placeholders banned."""

import io
import sys
import types

import pytest
from PIL import Image

from thyme_core.agent import Agent, AgentConfig
from thyme_core.agent.backends.vllm_backend import VLLMBackend
from thyme_core.agent.codec import ByteCodec

TURNS = ['<think><code>\n```python\nfrom PIL import Image\nout = "/mnt/data/temp_processed_images/v.png"\n'
         'Image.open(image_path).crop((0, 0, 120, 90)).save(out)\nprint(out)\n```\n</code>',
         "\nBlue.</think><answer>B</answer>"]


class FakeLLM:
    def __init__(self):
        self.calls = []

    def generate(self, prompts, params, use_tqdm=True):
        assert isinstance(params, list) and len(params) == len(prompts)  # one SamplingParams per prompt
        self.calls.append((prompts[0], params[0]))
        ids = ByteCodec().encode(TURNS[len(self.calls) - 1])
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=ids)])]


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.SamplingParams = lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", module)


def test_vllm_gets_compact_ids_and_ledger_sized_images(fake_vllm, home):
    from thyme_core.sandbox import SandboxPool

    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (30, 60, 220)).save(buf, "PNG")
    llm = FakeLLM()
    with SandboxPool(isolation="bwrap") as pool:
        traj = Agent(VLLMBackend(llm, ByteCodec()), home, AgentConfig(text_temperature=0.0), pool=pool).run(
            "v1", buf.getvalue(), "Colour?")
    assert traj.answer == "B" and [e.fed_back for e in traj.executions] == ["image"]
    (p1, s1), (p2, s2) = llm.calls
    pad = ByteCodec().image_pad_id
    assert p1["prompt_token_ids"].count(pad) == 1 and p2["prompt_token_ids"].count(pad) == 2  # compact form
    assert p2["prompt_token_ids"] == traj.ledger.ids[:len(p2["prompt_token_ids"])]
    sizes = [im.size for im in p2["multi_modal_data"]["image"]]
    assert sizes == [(s.width, s.height) for s in traj.ledger.images]
    assert s1["stop"] == ["</code>", "</answer>"] and s1["include_stop_str_in_output"] is True
    assert set(s1["logit_bias"]) == set(ByteCodec().banned_ids) and s1["temperature"] == 0.0
    assert s2["max_tokens"] <= AgentConfig().max_new_tokens


class BatchFakeLLM:
    """Answers each prompt by how far its trajectory got (its number of images)."""

    def __init__(self):
        self.calls = []

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params))
        pad = ByteCodec().image_pad_id
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(
            token_ids=ByteCodec().encode(TURNS[p["prompt_token_ids"].count(pad) - 1]))]) for p in prompts]


def test_a_lockstep_step_is_one_vllm_call_with_a_seed_per_request(fake_vllm, home):
    from thyme_core.sandbox import SandboxPool

    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (30, 60, 220)).save(buf, "PNG")
    llm = BatchFakeLLM()
    with SandboxPool(isolation="bwrap") as pool:
        agent = Agent(VLLMBackend(llm, ByteCodec()), home, AgentConfig(text_temperature=0.0), pool=pool)
        trajs, timing = agent.run_samples([agent.sample(f"v{i}", buf.getvalue(), "Colour?") for i in range(3)])
    assert [t.answer for t in trajs] == ["B"] * 3 and timing.steps == 2
    assert [(len(prompts), len(params)) for prompts, params in llm.calls] == [(3, 3), (3, 3)]  # one call per step
    for prompts, params in llm.calls:
        assert [p["prompt_token_ids"] for p in prompts] == [t.ledger.ids[:len(p["prompt_token_ids"])]
                                                            for p, t in zip(prompts, trajs)]
        assert len({s["seed"] for s in params}) == 3  # each trajectory samples with its own seed
    assert [len(p["multi_modal_data"]["image"]) for p in llm.calls[1][0]] == [2, 2, 2]


def test_vllm_missing_is_a_clear_error(monkeypatch, home):
    from thyme_core.base.errors import ThymeError

    monkeypatch.setitem(sys.modules, "vllm", None)  # import fails as on a CPU machine
    with pytest.raises(ThymeError, match="gpu"):
        VLLMBackend.load(None, home)
