"""GRPO-ATS rollouts with the scripted backend and the real sandbox: every prompt x G of a step in one lockstep
batch, group-ordered output (what grpo.group_advantages expects), the same rollouts as one after another,
the timing figures, and the image limit stopping the loop and flagging the rollout."""

import io
from dataclasses import replace

import pytest
from PIL import Image

from thyme_core.agent.backends.scripted import ScriptedBackend
from tests.fakes import BatchedScripted
from thyme_core.base.errors import ThymeError
from thyme_core.rl.rollout import RLPrompt, RolloutConfig, group_samples, loss_keep, make_agent, rollout, rollout_timed

CROP = '''<code>
```python
from PIL import Image
Image.open(image_path).crop((0, 0, 150, 120)).save("/mnt/data/temp_processed_images/z.png")
print("/mnt/data/temp_processed_images/z.png")
```
</code>'''
MEMBERS = {  # by group member: G members of a prompt take different paths
    "0": f"<think>Zoom.\n{CROP}\nRed.</think>\n<answer>A</answer>",
    "1": "<think>No need.</think>\n<answer>B</answer>",
    "2": f"<think>Zoom.\n{CROP}\nAgain.\n{CROP}\nRed.</think>\n<answer>A</answer>",
}



def image_bytes(colour):
    buf = io.BytesIO()
    Image.new("RGB", (300, 240), colour).save(buf, "PNG")
    return buf.getvalue()


PROMPTS = [RLPrompt("p0", image_bytes((210, 40, 40)), "Colour? A. red B. blue", "A"),
           RLPrompt("p1", image_bytes((40, 40, 210)), "Colour? A. red B. blue", "B")]


def test_every_prompt_times_g_runs_in_one_batch_group_by_group(home):
    config = RolloutConfig(group_size=3, max_rounds=3)
    backend = BatchedScripted(MEMBERS)
    agent = make_agent(backend, home, config)
    got, timing = rollout_timed(agent, PROMPTS, config)
    assert [(r.prompt.prompt_id, r.member) for r in got] == [(p, g) for p in ("p0", "p1") for g in range(3)]
    assert [r.trajectory.sample.sample_id for r in got] == ["p0:0", "p0:1", "p0:2", "p1:0", "p1:1", "p1:2"]
    assert backend.batches[0] == ["p0:0", "p0:1", "p0:2", "p1:0", "p1:1", "p1:2"]  # all six in the first call
    assert [len(r.images) for r in got] == [2, 1, 3] * 2 and all(r.limit == "" for r in got)
    assert got[0].images[0].sha256 != got[3].images[0].sha256  # each group its own prompt image
    # the same rollouts as each sample alone
    alone = [agent.run_sample(s) for s in group_samples(agent, PROMPTS, config)]
    strip = lambda t: (t.ledger.ids, t.ledger.mask, t.response, [replace(e, duration_s=0) for e in t.executions])
    assert [strip(r.trajectory) for r in got] == [strip(t) for t in alone]
    assert timing.rollouts == 6 and timing.rollouts_per_s == pytest.approx(6 / timing.wall_s)
    assert timing.engine_wait_s == pytest.approx(timing.wall_s - timing.generate_s)
    assert 0 < timing.engine_wait_share <= 1 and timing.sandbox_s > 0


def test_the_image_limit_stops_the_loop_and_is_flagged(home):
    config = RolloutConfig(group_size=3, max_images=2)
    got = rollout(make_agent(ScriptedBackend(MEMBERS), home, config), PROMPTS[:1], config)
    assert [r.limit for r in got] == ["", "", "image_limit"]
    limited = got[2].trajectory
    assert limited.stop_reason == "image_limit" and len(got[2].images) == 2 and limited.answer == ""
    assert [e.fed_back for e in limited.executions] == ["image", "none"]
    assert loss_keep(got, config) == [True, True, False]
    assert loss_keep(got, replace(config, mask_limited=False)) == [True, True, True]


def test_the_agent_must_match_the_rollout_config(home):
    config = RolloutConfig(group_size=1, max_images=2)
    agent = make_agent(ScriptedBackend(MEMBERS), home, replace(config, max_images=3))
    with pytest.raises(ThymeError, match="make_agent"):
        rollout(agent, PROMPTS[:1], config)
