"""The zoom task (synth/zoom.py): its pictures need the zoom, its code finds the square for real, and its three
forms (SFT records, RL records, the benchmark TSV) ask the same question with the same answer."""

from __future__ import annotations

import base64
import io
import shutil

import numpy as np
import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from thyme_core.agent.prompt import clean_question, user_turn
from thyme_core.eval.benchmarks import read_rows
from thyme_core.rl.rewards import format_ok, rule_accuracy
from thyme_core.synth import generate_sample
from thyme_core.synth.rl import rl_record
from thyme_core.synth.zoom import CODE, COLOURS, OPTIONS, SIZE, scene, write_zoom_benchmark
from thyme_core.synth.samples import sample_rng

LEARN_MAX_PIXELS = 16 * 28 * 28  # the learn model's processor (model/tiny.py VARIANTS["learn"])


def saturated(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB").convert("HSV"))[:, :, 1] > 100


def model_view(im: Image.Image) -> Image.Image:
    h, w = smart_resize(im.height, im.width, factor=28, min_pixels=4 * 28 * 28, max_pixels=LEARN_MAX_PIXELS)
    return im.convert("RGB").resize((w, h), Image.BICUBIC)


@pytest.mark.parametrize("index", range(6))
def test_the_square_needs_the_zoom_and_the_code_finds_it(index):
    s = generate_sample("zoom", index, seed=0)
    original, crop = (Image.open(io.BytesIO(b)) for b in s.images)
    colour = COLOURS[OPTIONS[s.answer]]
    # the answer's colour is at the centre of the code's real output
    centre = np.asarray(crop.convert("RGB"))[22:34, 22:34].reshape(-1, 3).mean(0)
    assert np.abs(centre - colour).max() < 40, (centre, colour)
    # as the model sees the original, the square fills under 10% of its 14 px patch; after the zoom (56x56, the
    # model's smallest image: 4 image tokens), the whole 14 px patch at the centre and more
    small, big = saturated(model_view(original)), saturated(model_view(crop))
    y, x = np.argwhere(small).mean(0).astype(int)
    assert small[y // 14 * 14:(y // 14 + 1) * 14, x // 14 * 14:(x // 14 + 1) * 14].mean() < 0.1
    assert crop.size == (56, 56) and big[21:35, 21:35].mean() > 0.9 and big.mean() > 0.25


def test_the_response_is_well_formed_and_its_answer_scores_against_every_form(tmp_path):
    s = generate_sample("zoom", 3, seed=5)
    assert format_ok(s.response) and CODE in s.response and s.response.count("<sandbox_output>") == 1
    rl = rl_record(s.record())
    row = read_rows(write_zoom_benchmark(tmp_path / "b.tsv", 4, seed=5), 3, 4)[0]
    assert rl["solution"] == row.answer == s.answer
    # the SFT question is the agent loop's user text of the benchmark's prompt (one prompt contract)
    path = s.question.split('User Image Path:** "')[1].split('"')[0]
    assert s.question == user_turn(row.prompt(), path, SIZE, SIZE)
    assert clean_question(rl["question"]) == clean_question(s.question) == row.prompt()
    assert base64.b64decode(row.image_b64) == s.images[0]
    assert rule_accuracy(s.answer, rl["solution"], OPTIONS) == 1.0


def test_colours_are_balanced_and_the_square_is_the_only_saturated_thing():
    colours = []
    for i in range(40):
        im, colour, (cx, cy) = scene(sample_rng("zoom", i, 1))
        colours.append(colour)
        ys, xs = np.nonzero(saturated(im))
        assert abs(xs.mean() - cx) <= 2 and abs(ys.mean() - cy) <= 2
    assert all(colours.count(c) >= 5 for c in COLOURS)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed (make setup)")
def test_the_code_runs_in_the_real_sandbox(tmp_path):
    from thyme_core.sandbox import SandboxPool, Status

    s = generate_sample("zoom", 1, seed=0)
    (tmp_path / "in.jpg").write_bytes(s.images[0])
    with SandboxPool(workers=1) as pool:
        r = pool.run(CODE, [tmp_path / "in.jpg"], session_id="zoom")
    assert r.status == Status.OK and len(r.images) == 1, r
    assert r.images[0].width == r.images[0].height == 56
