"""Synthetic samples follow Thyme's conventions, and their processed images are the true outputs of their code.

Small pictures (320x240) keep this fast; the same code paths run at 1000x800.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from thyme_core.synth import SPLIT_KINDS, generate_records, generate_sample
from thyme_core.synth.execute import run_blocks
from thyme_core.thyme_format import OUTPUT_DIR, clamp_box, code_blocks, output_size_problem, sandbox_outputs

W, H = 320, 240
N = 24
SPLITS = tuple(SPLIT_KINDS)
PATH_LINE = re.compile(r'^(?P<pre>|\*\*|### )User Image Path:(?:\*\*)? (?P<q>"?)(?P<path>[^"\n]+)(?P=q)$', re.M)
SIZE_LINE = re.compile(r'^(?:|\*\*|### )User Image Size:(?:\*\*)? "?(?P<w>\d+)x(?P<h>\d+)"?$', re.M)
BOX_RES = (
    re.compile(r"box = \((\d+), (\d+), (\d+), (\d+)\)"),
    re.compile(r"\w+, \w+, \w+, \w+ = (\d+), (\d+), (\d+), (\d+)"),
    re.compile(r"\w+, \w+ = (\d+), (\d+)\n\w+, \w+ = (\d+), (\d+)"),
)


@pytest.fixture(scope="module")
def samples():
    return {split: [generate_sample(split, i, seed=3, width=W, height=H) for i in range(N)] for split in SPLITS}


def _all(samples):
    return [s for split in SPLITS for s in samples[split]]


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_code_blocks_outputs_and_images_agree(samples):
    for s in _all(samples):
        blocks, outs = code_blocks(s.response), sandbox_outputs(s.response)
        assert len(blocks) == len(outs), s.response
        shown = sum(o.shows_image for o in outs)
        expected_images = shown + (1 if s.images else 0)  # the original, then one per image output
        assert len(s.images) == expected_images, (s.variant, s.response)
        assert s.response.startswith("<think>") and s.response.rstrip().endswith("</answer>")
        assert s.response.count("<think>") == 1 and s.response.count("<answer>") == 1


def test_rerunning_the_code_reproduces_every_image_and_output(samples, tmp_path):
    # The code is re-executed from the response text alone (plus the original image): same pixels, same prints.
    for i, s in enumerate(_all(samples)):
        codes = [b.code for b in code_blocks(s.response)]
        runs = run_blocks(codes, s.images[0] if s.images else None, tmp_path / str(i))
        assert [r.stdout for r in runs] == [o.body for o in sandbox_outputs(s.response)]
        produced = [img for r in runs for img in r.images]
        assert len(produced) == len(s.images[1:])
        for got, want in zip(produced, s.images[1:]):
            assert np.array_equal(_pixels(got), _pixels(want))


def test_split_families_have_their_shape(samples):
    for s in samples["wo_thinking_thyme_single_round"]:
        assert len(code_blocks(s.response)) == (0 if s.variant == "direct" else 1)
        assert len(s.images) == (1 if s.variant == "direct" else 2)
    for s in samples["2round"]:
        assert len(code_blocks(s.response)) == 2 and len(s.images) == 3
    comp = samples["computation"]
    assert any(not s.images for s in comp) and any(s.images for s in comp)
    assert {len(code_blocks(s.response)) for s in comp} == {1, 2}
    for s in comp:  # computation prints a value: the last sandbox output is text, not an image
        assert not sandbox_outputs(s.response)[-1].shows_image


def test_original_is_a_jpeg_of_the_asked_size_and_outputs_fit_qwen(samples):
    for s in _all(samples):
        if not s.images:
            continue
        with Image.open(io.BytesIO(s.images[0])) as im:
            assert (im.format, im.size, im.mode) == ("JPEG", (W, H), "RGB")
        for data in s.images[1:]:
            with Image.open(io.BytesIO(data)) as im:
                assert im.format in ("JPEG", "PNG")
                assert output_size_problem(*im.size) is None


def test_question_lines(samples):
    decorations = set()
    for s in _all(samples):
        if not s.images:  # text-only computation: no image marker, no path lines
            assert "<image>" not in s.question and "User Image" not in s.question
            continue
        assert s.question.startswith("<image>\nQuestion: ")
        m, size = PATH_LINE.search(s.question), SIZE_LINE.search(s.question)
        assert m and size, s.question
        assert (int(size["w"]), int(size["h"])) == (W, H)
        decorations.add((m["pre"], m["q"]))
        assert "### **Output Format (strict adherence required):**" in s.question
    assert {pre for pre, _ in decorations} == {"", "**", "### "}
    assert {q for _, q in decorations} == {"", '"'}


def _source_size(s, code: str) -> tuple[int, int]:
    """Size of the image a block crops: an earlier output when it opens one, else the original."""
    names = [o.body.strip() for o in sandbox_outputs(s.response) if o.shows_image]
    for k, name in enumerate(names):
        if f'previous_path = "{name}"' in code:
            return Image.open(io.BytesIO(s.images[1 + k])).size
    return Image.open(io.BytesIO(s.images[0])).size


def test_crop_boxes_are_literal_and_already_clamped(samples):
    # A sandbox that clamps boxes Thyme's way must produce the same crop as the literal box.
    seen = 0
    for s in _all(samples):
        for block in code_blocks(s.response):
            boxes = [tuple(map(int, m)) for r in BOX_RES for m in r.findall(block.code)]
            for box in boxes:
                w, h = _source_size(s, block.code)
                assert clamp_box(box, w, h) == box, (box, w, h)
                seen += 1
    assert seen > 30


def test_code_varies_like_the_real_data(samples):
    codes = [b.code for s in _all(samples) for b in code_blocks(s.response)]
    text = "\n".join(codes)
    for needle in ("cv2.imread", "Image.open", "np.array", "ImageEnhance", "cv2.resize", "rotate",
                   "threshold", "from uuid import uuid4", OUTPUT_DIR, "print("):
        assert needle in text, needle
    questions = {s.question for s in _all(samples) if s.images}
    paths = [m.group(1) for m in re.finditer(r'image_path = "([^"]+)"', text)]
    question_paths = {PATH_LINE.search(q)["path"] for q in questions}
    assert any(p in question_paths for p in paths), "some code uses the question's path"
    assert any(p not in question_paths for p in paths), "some code uses a stale or invented path"
    names = re.findall(r"temp_processed_images/([^\s\"]+)", "\n".join(s.response for s in _all(samples)))
    assert len(set(names)) > 20 and any(re.search(r"[0-9a-f]{8}", n) for n in names)


def test_two_round_second_block_often_uses_the_first_output(samples):
    uses_output = [s for s in samples["2round"] if "previous_path" in code_blocks(s.response)[1].code]
    assert uses_output and len(uses_output) < N


def test_later_blocks_may_reuse_variables_of_earlier_ones(samples):
    # Thyme runs a trajectory's blocks in one namespace: a second block may crop `img` without reopening it.
    def opens(code: str) -> bool:
        return any(k in code for k in ("Image.open", "cv2.imread"))

    seconds = [code_blocks(s.response)[1].code for s in samples["2round"]]
    assert any(not opens(code) for code in seconds)


def test_deterministic_by_seed_and_independent_of_workers():
    serial = list(generate_records("2round", 26, seed=11, width=W, height=H, workers=1))
    pooled = list(generate_records("2round", 26, seed=11, width=W, height=H, workers=2))
    assert serial == pooled
    other = list(generate_records("2round", 3, seed=12, width=W, height=H, workers=1))
    assert other != serial[:3]


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="unknown split"):
        generate_sample("3round", 0)
