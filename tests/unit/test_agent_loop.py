"""The loop with the scripted backend and the real sandbox: exact masks, feedback kinds, the token budget,
the round limit, the image limit and per-segment temperatures."""

import hashlib
import io
import json
from dataclasses import asdict, replace

import pytest
from PIL import Image

from thyme_core.agent import Agent, AgentConfig
from thyme_core.agent.backends.scripted import ScriptedBackend, script_of
from thyme_core.agent.ledger import image_tokens
from thyme_core.sandbox import SandboxPool

CROP = '''<code>
```python
from PIL import Image
img = Image.open(image_path)
c = img.crop((10, 10, 210, 210))
out = "/mnt/data/temp_processed_images/c.png"
c.save(out)
print(out)
```
</code>
<sandbox_output>/mnt/data/temp_processed_images/c.png</sandbox_output>'''
COMPUTE = '''<code>
```python
print(c.size[0] * 2)
```
</code>
<sandbox_output>400</sandbox_output>'''
RESPONSE = f"<think>Crop first.\n{CROP}\nNow compute.\n{COMPUTE}\nDone.</think>\n<answer>**B**</answer>"


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(isolation="bwrap") as p:
        yield p


@pytest.fixture
def image_bytes():
    buf = io.BytesIO()
    Image.new("RGB", (300, 240), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def run(home, pool, image_bytes, response=RESPONSE, backend=None, **config):
    agent = Agent(backend or ScriptedBackend(response), home, AgentConfig(**config), pool=pool)
    return agent.run("s1", image_bytes, "What colour? A. red B. blue")


def test_masks_are_exact_and_sandbox_output_is_fed_back(home, pool, image_bytes):
    traj = run(home, pool, image_bytes)
    led, codec = traj.ledger, ScriptedBackend(RESPONSE).codec
    generated = [t for t, m in zip(led.ids, led.mask) if m == 1]
    assert codec.decode(generated) == script_of(RESPONSE)  # every model token and nothing else (stopped at </answer>)
    first_gen = led.mask.index(1)
    fed = [t for t, m in zip(led.ids[first_gen:], led.mask[first_gen:]) if m == 0]
    assert codec.decode(fed) == ("\n<sandbox_output><|vision_start|><|image_pad|><|vision_end|></sandbox_output>"
                                 "\n<sandbox_output>400</sandbox_output>")
    assert [s.source for s in led.images] == ["prompt", "sandbox"]
    assert (led.images[1].width, led.images[1].height) == (196, 196)  # the 200x200 crop, fitted to 28s
    assert traj.stop_reason == "answer" and traj.answer == "B"
    assert [(e.status, e.fed_back) for e in traj.executions] == [("ok", "image"), ("ok", "text")]
    # the readable response is the recorded one, with the stored path in place of the sandbox path
    stored = traj.executions[0].images[0].ref
    assert traj.response == RESPONSE.replace("/mnt/data/temp_processed_images/c.png</sandbox_output>",
                                             f"{stored}</sandbox_output>")
    assert (home.root / stored).is_file()


def test_errors_are_fed_back_as_text(home, pool, image_bytes):
    response = "<code>\n```python\nprint(1 / 0)\n```\n</code>\nOops.<answer>A</answer>"
    traj = run(home, pool, image_bytes, response)
    assert traj.executions[0].status == "error" and traj.executions[0].fed_back == "error"
    assert "<sandbox_output>ZeroDivisionError: division by zero</sandbox_output>" in traj.response
    assert traj.answer == "A"


def test_image_shrinks_to_fit_the_budget_and_never_overflows(home, pool, image_bytes):
    full = run(home, pool, image_bytes)
    crop = full.ledger.images[1]
    start = full.ledger.expanded().image_spans[1][0]  # where the crop's image tokens begin
    closing = len("<|vision_end|></sandbox_output>".replace("<|vision_end|>", "v"))  # byte codec: 1 + 17 tokens
    budget = start + 30 + closing  # room for 30 image tokens, not the crop's 49
    traj = run(home, pool, image_bytes, max_length=budget, reserve_tokens=0)
    small = traj.ledger.images[1]
    assert crop.n_tokens == 49 and small.n_tokens <= 30 and small.width == small.height  # shrunk, square kept
    assert small.n_tokens == image_tokens(small.width, small.height)  # whole, never cut
    assert len(traj.ledger) <= budget and traj.stop_reason == "budget"


def test_no_room_for_any_image_ends_the_trajectory_without_cutting_it(home, pool, image_bytes):
    full = run(home, pool, image_bytes)
    first_round_end = full.ledger.mask.index(0, full.ledger.mask.index(1))  # the first sandbox token
    budget = first_round_end + full.ledger.images[0].n_tokens - 1 + 8  # 8 tokens: wrappers, but no image
    traj = run(home, pool, image_bytes, max_length=budget, reserve_tokens=0)
    assert traj.stop_reason == "budget" and len(traj.ledger.images) == 1
    assert traj.executions[0].fed_back == "none" and len(traj.ledger) <= budget
    assert traj.ledger.mask[-1] == 1  # nothing of the sandbox output was appended


def test_round_limit(home, pool, image_bytes):
    response = f"{COMPUTE.replace('c.size[0]', '3')}\n{COMPUTE.replace('c.size[0]', '4')}\n<answer>A</answer>"
    traj = run(home, pool, image_bytes, response, max_rounds=1)
    assert len(traj.executions) == 1 and traj.stop_reason == "round_limit" and traj.answer == ""


def test_image_limit_ends_the_trajectory_before_the_output_that_would_pass_it(home, pool, image_bytes):
    second = CROP.replace("c.png", "d.png").replace("10, 10, 210, 210", "0, 0, 100, 100")
    response = f"<think>Crop.\n{CROP}\nAgain.\n{second}\nRed.</think>\n<answer>A</answer>"
    full = run(home, pool, image_bytes, response)
    assert full.stop_reason == "answer" and len(full.ledger.images) == 3  # no limit (max_images 0)
    traj = run(home, pool, image_bytes, response, max_images=2)  # prompt + first crop fit, the second would not
    assert traj.stop_reason == "image_limit" and len(traj.ledger.images) == 2 and traj.answer == ""
    assert [e.fed_back for e in traj.executions] == ["image", "none"] and traj.executions[1].status == "ok"
    assert traj.ledger.mask[-1] == 1 and traj.response.endswith("</code>")  # the second output was not appended
    assert traj.ledger.ids == full.ledger.ids[:len(traj.ledger.ids)]  # the same trajectory up to there
    first = run(home, pool, image_bytes, response, max_images=1)
    assert first.stop_reason == "image_limit" and [e.fed_back for e in first.executions] == ["none"]
    # a text output adds no image: RESPONSE (one crop, then a computation) ends at its answer under 2
    assert run(home, pool, image_bytes, max_images=2).stop_reason == "answer"


class Recording(ScriptedBackend):
    def __init__(self, response):
        super().__init__(response)
        self.seen = []

    def generate(self, request):
        self.seen.append((request.temperature, request.stop))
        return super().generate(request)


def test_text_and_code_are_sampled_at_their_own_temperatures(home, pool, image_bytes):
    backend = Recording(RESPONSE)
    traj = run(home, pool, image_bytes, backend=backend, text_temperature=1.0, code_temperature=0.0)
    text, code = (1.0, ("<code>", "</code>", "</answer>")), (0.0, ("</code>",))
    assert backend.seen == [text, code, text, code, text]
    assert traj.answer == "B" and len(traj.executions) == 2


class RecordingFilters(ScriptedBackend):
    def __init__(self, response):
        super().__init__(response)
        self.seen = []

    def generate(self, request):
        self.seen.append((request.temperature, request.top_p, request.top_k, request.repetition_penalty))
        return super().generate(request)


def test_sampling_filters_apply_to_sampled_segments_only(home, pool, image_bytes):
    # GRPO-ATS presets (top_p 0.9, top_k 50, repetition penalty 1.05) shape the text sampled at 1.0; the code
    # segments at temperature 0 must stay the plain argmax, so they get no filter (a penalty would change it)
    backend = RecordingFilters(RESPONSE)
    run(home, pool, image_bytes, backend=backend, text_temperature=1.0, code_temperature=0.0,
        top_p=0.9, top_k=50, repetition_penalty=1.05)
    text, code = (1.0, 0.9, 50, 1.05), (0.0, 1.0, 0, 1.0)
    assert backend.seen == [text, code, text, code, text]


def test_same_temperatures_generate_whole_rounds(home, pool, image_bytes):
    backend = Recording(RESPONSE)
    run(home, pool, image_bytes, backend=backend, text_temperature=0.7, code_temperature=0.7)
    assert backend.seen == [(0.7, ("</code>", "</answer>"))] * 3


def test_config_validates():
    with pytest.raises(ValueError):
        AgentConfig(max_length=0)
    with pytest.raises(ValueError):
        AgentConfig(isolation="docker")
    with pytest.raises(ValueError):
        AgentConfig(max_images=-1)
    assert AgentConfig().fingerprint() == replace(AgentConfig(), isolation="none").fingerprint()
    # max_images changes trajectories; its default (0, no limit) keeps the keys runs had before the field
    assert AgentConfig(max_images=10).fingerprint() != AgentConfig().fingerprint()
    # (the system prompt enters by its text's hash, not its file name: test_prompt_contract.py)
    from thyme_core.agent.prompt import system_prompt_sha

    old = {k: v for k, v in asdict(AgentConfig()).items() if k not in ("isolation", "max_images")}
    old["system_prompt"] = system_prompt_sha()
    assert AgentConfig().fingerprint() == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:12]
