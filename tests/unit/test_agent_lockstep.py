"""Many trajectories in lockstep (loop.run_trajectories) against the same trajectories one after another, with
the real sandbox: identical trajectories for a deterministic backend (scripted, and the tiny Qwen2.5-VL
sampling at temperature 1), one backend call per step for a batching backend, sandbox runs of a step at the
same time, the timing figures, and every session closed when a generation fails mid-batch."""

import io
from dataclasses import replace

import pytest
import torch
from PIL import Image

from tests.fakes import BatchedScripted
from thyme_core.agent import Agent, AgentConfig
from thyme_core.agent.backends.scripted import ScriptedBackend, steer_through_scripts
from thyme_core.sandbox import SandboxPool

CROP = '''<code>
```python
from PIL import Image
img = Image.open(image_path)
c = img.crop(({x}, 10, {x} + 120, 130)).resize((240, 240))
out = "/mnt/data/temp_processed_images/c{x}.png"
c.save(out)
print(out)
```
</code>
<sandbox_output>x</sandbox_output>'''
COMPUTE = "<code>\n```python\nprint(c.size[0] * {k})\n```\n</code>\n<sandbox_output>x</sandbox_output>"
SCRIPTS = {  # one of each way a trajectory can go, so lockstep steps hold trajectories in different states
    "crop_then_compute": f"<think>Crop.\n{CROP.format(x=10)}\nCount.\n{COMPUTE.format(k=2)}\nOk.</think>"
                         "<answer>B</answer>",
    "answer_at_once": "<think>Easy.</think><answer>A</answer>",
    "error": "<think>Try.\n<code>\n```python\nprint(1 / 0)\n```\n</code>\nOops.</think><answer>C</answer>",
    "two_crops": f"<think>{CROP.format(x=0)}\nAgain.\n{CROP.format(x=60)}\nRed.</think><answer>A</answer>",
    "round_limit": "\n".join(COMPUTE.format(k=k).replace("c.size[0]", "3") for k in range(4)),
    "eos": "I do not know",
}


def image_bytes():
    buf = io.BytesIO()
    Image.new("RGB", (300, 240), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(isolation="bwrap", workers=8) as p:
        yield p


def view(traj):
    """Everything of a trajectory that must not depend on how it was batched (not its timings)."""
    led = traj.ledger
    return {"ids": led.ids, "mask": led.mask, "images": led.images, "response": traj.response,
            "turns": traj.turns, "stop": traj.stop_reason, "answer": traj.answer,
            "executions": [replace(e, duration_s=0.0) for e in traj.executions]}


def sequential_and_lockstep(agent, ids):
    samples = [agent.sample(i, image_bytes(), "What colour? A. red B. blue C. green") for i in ids]
    one_by_one = [agent.run_sample(s) for s in samples]
    if hasattr(agent.backend, "batches"):
        agent.backend.batches.clear()
    together, timing = agent.run_samples(samples)
    return one_by_one, together, timing


@pytest.mark.parametrize("batched", [False, True])
def test_lockstep_gives_the_sequential_trajectories(home, pool, batched):
    backend = BatchedScripted(SCRIPTS) if batched else ScriptedBackend(SCRIPTS)
    config = AgentConfig(max_rounds=3, text_temperature=1.0, code_temperature=0.0)
    one_by_one, together, timing = sequential_and_lockstep(Agent(backend, home, config, pool=pool), list(SCRIPTS))
    assert [view(t) for t in together] == [view(t) for t in one_by_one]
    assert [t.stop_reason for t in together] == ["answer", "answer", "answer", "answer", "round_limit", "eos"]
    assert [e.fed_back for e in together[0].executions] == ["image", "text"]
    assert [e.fed_back for e in together[2].executions] == ["error"]
    if batched:  # one call per step: the first sends all six, later ones fewer as trajectories end
        sizes = [len(b) for b in backend.batches]
        assert backend.batches[0] == list(SCRIPTS) and sizes == sorted(sizes, reverse=True) and sizes[-1] < 6
        assert len(sizes) == timing.steps
    assert timing.trajectories == 6 and timing.wall_s >= timing.generate_s
    assert timing.engine_wait_s == pytest.approx(timing.wall_s - timing.generate_s)
    assert timing.sandbox_s == pytest.approx(sum(t.sandbox_s for t in together))


def test_lockstep_on_the_tiny_model_sampling_at_temperature_one(tmp_path_factory, pool):
    # One sample is steered through a script (code, sandbox, fed-back image: the M-RoPE inputs grow), the other
    # samples freely from the random model at temperature 1 with top-k/top-p: each request's own seed must make
    # it the same whichever other requests surround it.
    from thyme_core.agent.backends.hf import TransformersBackend
    from thyme_core.base.home import DataHome

    home = DataHome(tmp_path_factory.mktemp("tiny-lockstep")).ensure()
    backend = TransformersBackend.load(None, home)
    crop = f"<think>Crop.\n{CROP.format(x=10)}\nRed.</think><answer>A</answer>"
    steer = steer_through_scripts({"crop": crop}, backend.codec)
    backend.logits_processors = lambda request, n_in: steer(request, n_in) if "crop" in request.sample_id else []
    config = AgentConfig(max_length=1200, max_new_tokens=96, text_temperature=1.0, code_temperature=0.0,
                         top_k=50, top_p=0.9, seed=1)  # a seed whose free draw does not end at EOS at once (the new prompt)
    torch.manual_seed(123)  # the global RNG state must not matter either
    one_by_one, together, _ = sequential_and_lockstep(Agent(backend, home, config, pool=pool), ["free", "p:crop"])
    assert [view(t) for t in together] == [view(t) for t in one_by_one]
    free, steered = together
    assert [e.fed_back for e in steered.executions] == ["image"] and steered.answer == "A"
    sampled = [t for t, m in zip(free.ledger.ids, free.ledger.mask) if m]
    assert not free.executions and len(set(sampled)) > 10  # random tokens, not one repeated argmax


def test_sandbox_runs_of_a_step_run_at_the_same_time(home, pool):
    nap = "<code>\n```python\nimport time\ntime.sleep(0.6)\nprint('rested')\n```\n</code>\n<answer>A</answer>"
    agent = Agent(BatchedScripted(nap), home, AgentConfig(), pool=pool)
    one_by_one, together, timing = sequential_and_lockstep(agent, ["n0", "n1", "n2", "n3"])
    assert all(e.stdout == "rested\n" for t in together for e in t.executions)
    assert timing.sandbox_s >= 4 * 0.6  # the work was done four times...
    assert timing.wall_s < 0.6 * 2.5  # ...in about the time of one run, not four
    assert timing.engine_wait_s >= 0.6 and timing.engine_wait_share > 0.5
    assert sum(t.total_s for t in one_by_one) >= 4 * 0.6


class FailingOnThird(ScriptedBackend):
    def __init__(self, responses):
        super().__init__(responses)
        self.calls = 0

    def generate(self, request):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("engine died")
        return super().generate(request)


class RecordingPool:
    """The real pool, recording which sessions were closed."""

    def __init__(self, pool):
        self.pool, self.closed = pool, []

    def __getattr__(self, name):
        return getattr(self.pool, name)

    def close_session(self, session_id):
        self.closed.append(session_id)
        self.pool.close_session(session_id)


def test_every_session_is_closed_when_a_generation_fails(home, pool):
    recording = RecordingPool(pool)
    agent = Agent(FailingOnThird(SCRIPTS), home, AgentConfig(), pool=recording)
    samples = [agent.sample(i, image_bytes(), "Colour?") for i in ("crop_then_compute", "two_crops")]
    with pytest.raises(RuntimeError, match="engine died"):
        agent.run_samples(samples)
    assert sorted(recording.closed) == sorted(f"agent-adhoc-{s.sample_id}" for s in samples)
    with pytest.raises(ValueError, match="own sandbox session"):
        agent.run_samples([samples[0], samples[0]])
