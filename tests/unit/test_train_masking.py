"""Which characters carry loss: literal responses, each with the pieces we expect and why."""

import pytest

from thyme_core.agent.prompt import Prompt
from thyme_core.sft.masking import (
    Piece, harness_spans, images_shown, last_round_start, prompt_pieces, response_pieces,
)

CODE1 = "<code>\n```python\nprint(1)\n```\n</code>"
CODE2 = "<code>\n```python\nprint(2)\n```\n</code>"


def trained(pieces):
    return "".join(p.text for p in pieces if p.trainable)


def context(pieces):
    return "".join(p.text if p.image is None else f"[img{p.image}]" for p in pieces if not p.trainable)


@pytest.mark.parametrize("response, want_trained, want_context", [
    # no code: everything the model wrote, plus the end-of-turn token, carries loss
    ("<think>easy</think><answer>4</answer>",
     "<think>easy</think><answer>4</answer><|im_end|>", "\n"),
    # a text sandbox output is the harness's: masked from the end of </code> to </sandbox_output>
    (f"<think>a {CODE1}\n<sandbox_output>1</sandbox_output>\nso</think><answer>1</answer>",
     f"<think>a {CODE1}\nso</think><answer>1</answer><|im_end|>",
     "\n<sandbox_output>1</sandbox_output>\n"),
    # an image output: its path is replaced by image 1, which is context too
    (f"x {CODE1} <sandbox_output>images/ab/c.png</sandbox_output> y",
     f"x {CODE1} y<|im_end|>", " <sandbox_output>[img1]</sandbox_output>\n"),
    # the <image> placeholder also stands for an image
    (f"{CODE1}<sandbox_output><image></sandbox_output>z", f"{CODE1}z<|im_end|>",
     "<sandbox_output>[img1]</sandbox_output>\n"),
    # text between </code> and the output that is not whitespace stays the model's
    (f"{CODE1} note <sandbox_output>7</sandbox_output>", f"{CODE1} note <|im_end|>",
     "<sandbox_output>7</sandbox_output>\n"),
])
def test_all_rounds(response, want_trained, want_context):
    pieces = response_pieces(response)
    assert trained(pieces) == want_trained
    assert context(pieces) == want_context


def test_every_character_is_in_exactly_one_piece():
    response = f"a {CODE1}\n<sandbox_output>p.png</sandbox_output> b {CODE2}\n<sandbox_output>q.png</sandbox_output> c"
    pieces = response_pieces(response)
    text = "".join(p.text if p.image is None else "p.png" if p.image == 1 else "q.png" for p in pieces)
    assert text == response + "<|im_end|>\n"  # nothing dropped, nothing doubled
    assert [p.image for p in pieces if p.image is not None] == [1, 2]  # images in the order shown


def test_last_round_only_masks_earlier_rounds():
    response = (f"<think>look {CODE1}\n<sandbox_output>a.png</sandbox_output>\nmore {CODE2}\n"
                f"<sandbox_output>b.png</sandbox_output>\nit is 7</think><answer>7</answer>")
    pieces = response_pieces(response, last_round_only=True)
    # round 2 starts right after the first output: its code and everything after it are trained
    assert trained(pieces) == f"\nmore {CODE2}\nit is 7</think><answer>7</answer><|im_end|>"
    assert f"<think>look {CODE1}" in context(pieces)
    assert last_round_start(response) == response.index("</sandbox_output>") + len("</sandbox_output>")


@pytest.mark.parametrize("response", [
    "<answer>1</answer>",  # no code: nothing to cut
    f"{CODE1}<sandbox_output>1</sandbox_output><answer>1</answer>",  # one round: nothing to cut
])
def test_last_round_only_changes_nothing_with_one_round(response):
    assert last_round_start(response) == 0
    assert response_pieces(response, True) == response_pieces(response, False)


def test_harness_spans_number_only_image_outputs():
    response = f"{CODE1}<sandbox_output>3.5</sandbox_output>{CODE2}<sandbox_output>x.jpg</sandbox_output>"
    assert [s[2] for s in harness_spans(response)] == [None, 1]
    assert images_shown(response) == 1


@pytest.mark.parametrize("user, want", [
    # the <image> tag becomes image 0, in place (its newline stays, as Thyme's data and ms-swift have it)
    ("<image>\nQ?", ["S", 0, "\nQ?E"]),
    ("Look: <image> Q?", ["SLook: ", 0, " Q?E"]),
    # no tag: a text-only turn, no image slot at all
    ("Q?", ["SQ?E"]),
])
def test_prompt_pieces(user, want):
    head = "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\n"
    tail = "<|im_end|>\n<|im_start|>assistant\n"
    got = [p.image if p.image is not None else p.text.replace(head, "S").replace(tail, "E")
           for p in prompt_pieces(Prompt("sys", user))]
    assert got == want
    assert not any(p.trainable for p in prompt_pieces(Prompt("sys", user)))  # prompts never train


def test_piece_defaults_are_context():
    assert Piece("x").trainable is False
