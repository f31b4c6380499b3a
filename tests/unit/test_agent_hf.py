"""End to end on the tiny Qwen2.5-VL (transformers, CPU) with the real sandbox.

The random tiny model cannot write code on its own, so a LogitsProcessor steers it through a script, token by
token, inside the real `generate` call (inputs, pixel values, grids, M-RoPE positions and stopping are the
backend's own). Checked: the second generation's input holds the fed-back image's tokens with the right
grid, masks are exact, the budget holds, and a teacher-forced forward over the finished trajectory
reproduces the logits `generate` produced (which fails if M-RoPE positions are built differently).
"""

import io

import pytest
import torch
from PIL import Image

from thyme_core.agent import Agent, AgentConfig
from thyme_core.agent.backends.hf import TransformersBackend
from thyme_core.agent.backends.scripted import script_of, steer_through_scripts
from thyme_core.agent.ledger import fit_image

RESPONSE = '''<think>Zoom in.
<code>
```python
from PIL import Image
img = Image.open(image_path)
c = img.crop((0, 0, 150, 120)).resize((300, 240))
out = "/mnt/data/temp_processed_images/z.png"
c.save(out)
print(out)
```
</code>
<sandbox_output>/mnt/data/temp_processed_images/z.png</sandbox_output>
It is red.</think>
<answer>A</answer>'''


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    from thyme_core.base.home import DataHome

    home = DataHome(tmp_path_factory.mktemp("tiny-home"))
    b = TransformersBackend.load(None, home, trace=True)
    b.logits_processors = steer_through_scripts(RESPONSE, b.codec)  # a hand-written fake for a trained model
    return b


@pytest.fixture(scope="module")
def pool():
    from thyme_core.sandbox import SandboxPool

    with SandboxPool(isolation="bwrap") as p:
        yield p


def image_bytes():
    buf = io.BytesIO()
    Image.new("RGB", (300, 240), (210, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


def test_tiny_model_trajectory_feeds_the_image_back_with_exact_masks(backend, pool, home):
    backend.calls.clear()
    config = AgentConfig(max_length=1200, max_new_tokens=400)
    traj = Agent(backend, home, config, pool=pool).run("t1", image_bytes(), "What colour is it? A. red B. blue")
    assert traj.stop_reason == "answer" and traj.answer == "A"
    assert [(e.status, e.fed_back) for e in traj.executions] == [("ok", "image")]
    codec, led = backend.codec, traj.ledger
    pad = codec.image_pad_id
    # prompt and fed-back image sizes follow the tiny processor's pixel limits and the ledger's fitting
    prompt_img, fed_img = led.images
    assert (prompt_img.width, prompt_img.height) == fit_image(300, 240, codec.min_pixels, codec.max_pixels)
    assert fed_img.source == "sandbox" and fed_img.n_tokens > 0

    first, second = backend.calls
    ids1, ids2 = first["inputs"]["input_ids"][0], second["inputs"]["input_ids"][0]
    assert int((ids1 == pad).sum()) == prompt_img.n_tokens  # the first call sees only the prompt image
    assert int((ids2 == pad).sum()) == prompt_img.n_tokens + fed_img.n_tokens  # the second also the fed-back one
    assert second["inputs"]["image_grid_thw"].tolist() == [list(prompt_img.grid_thw), list(fed_img.grid_thw)]
    assert torch.equal(second["inputs"]["mm_token_type_ids"][0], (ids2 == pad).int())
    # the second call's input is exactly the ledger as it stood: prompt + generation 1 + sandbox output
    exp = led.expanded()
    assert ids2.tolist() == exp.ids[:len(ids2)]

    # masks: the model's tokens decode to the script, the rest is prompt and sandbox output
    generated = [t for t, m in zip(led.ids, led.mask) if m]
    assert generated == first["generated"] + second["generated"]
    assert codec.decode(generated) == script_of(RESPONSE)
    fed = [t for t, m in zip(led.ids[led.mask.index(1):], led.mask[led.mask.index(1):]) if not m]
    assert codec.decode(fed) == "\n<sandbox_output><|vision_start|><|image_pad|><|vision_end|></sandbox_output>"
    assert len(led) <= config.max_length
    assert sum(exp.mask) == len(generated) and all(exp.mask[a:b] == [0] * (b - a) for a, b in exp.image_spans)


def test_teacher_forced_forward_reproduces_generation_logits(backend, pool, home):
    backend.calls.clear()
    traj = Agent(backend, home, AgentConfig(max_length=1200), pool=pool).run("t2", image_bytes(), "Colour?")
    led = traj.ledger
    inputs = backend.model_inputs(led.ids, [c for c in _fed_images(traj)])
    with torch.no_grad():
        logits = backend.hf_model(**inputs).logits[0]
    exp = led.expanded()
    positions = [i for i, m in enumerate(exp.mask) if m]  # each generated token, predicted from i - 1
    produced = torch.stack([l for call in backend.calls for l in call["logits"]])
    assert produced.shape[0] == len(positions)
    torch.testing.assert_close(logits[[p - 1 for p in positions]], produced, rtol=1e-4, atol=1e-4)


def _fed_images(traj):
    from thyme_core.agent.backends.base import FedImage

    first = FedImage(traj.sample.image, traj.ledger.images[0].width, traj.ledger.images[0].height)
    return [first, *[im for e in traj.executions for im in e.images]]


def test_image_budget_shrinks_the_fed_back_image(backend, pool, home):
    backend.calls.clear()
    roomy = Agent(backend, home, AgentConfig(max_length=1200), pool=pool).run("t3", image_bytes(), "Colour?")
    start = roomy.ledger.expanded().image_spans[1][0]
    closing = len(backend.codec.encode("</sandbox_output>")) + 1
    budget = start + 6 + closing  # room for 6 image tokens
    traj = Agent(backend, home, AgentConfig(max_length=budget, reserve_tokens=0), pool=pool).run(
        "t3", image_bytes(), "Colour?")
    assert roomy.ledger.images[1].n_tokens > 6 >= traj.ledger.images[1].n_tokens >= 4
    assert len(traj.ledger) <= budget and traj.stop_reason == "budget"
