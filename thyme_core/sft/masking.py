"""Which characters of a Thyme SFT sample the model wrote, and so which tokens carry loss.

A conversation is cut into pieces: (text, trainable) or an image slot. Trainable means model-written:
the assistant's reasoning, its <code> blocks and answer, and the closing <|im_end|>. Never trainable: the
system and user turns (the prompt contract of agent/prompt.py, the same text the agent loop starts from), the assistant header, and every sandbox output. At inference the model stops at
`</code>` and the harness appends `<sandbox_output>...</sandbox_output>` (text, or the processed image as a
vision block), so the whole span from the end of `</code>` to the end of `</sandbox_output>` is harness text,
tags included.

"Last round only" (Thyme trained its 2-round data so, "maskstep1"): when a response has more than one code
block, only the round of the last code block and what follows it carry loss; the earlier rounds are
context. A round starts right after the previous sandbox output. With 0 or 1 code block it changes nothing.

Pure functions on strings: tests/unit/test_train_masking.py checks them on literal cases.
"""

from __future__ import annotations

from dataclasses import dataclass

from thyme_core.agent.prompt import Prompt
from thyme_core.thyme_format import code_blocks, sandbox_outputs

VISION_BLOCK = "<|vision_start|><|image_pad|><|vision_end|>"


@dataclass(frozen=True)
class Piece:
    """Text to tokenize as one unit, or an image slot (`image` = index into the sample's image list)."""

    text: str = ""
    trainable: bool = False
    image: int | None = None
    data: bool = False  # text printed by code: special-token literals in it are tokenized as plain text


def prompt_pieces(prompt: Prompt) -> list[Piece]:
    """System turn, user turn with image 0 where its `<image>` tag is, assistant header: the text of
    agent/prompt.Prompt (the contract the agent loop's ledger starts from), never trainable."""
    if not prompt.has_image:
        return [Piece(prompt.head())]
    return [Piece(prompt.head()), Piece(image=0), Piece(prompt.tail())]


def harness_spans(response: str) -> list[tuple[int, int, int | None]]:
    """(start, end, image index or None) of every span the harness wrote: each sandbox output, widened
    back to the end of the `</code>` before it when only whitespace lies between.

    Image-showing outputs take images 1, 2, ... in order (image 0 is the original input).
    """
    code_ends = [b.span[1] for b in code_blocks(response)]
    spans, next_image = [], 1
    for out in sandbox_outputs(response):
        start = out.span[0]
        prior = [e for e in code_ends if e <= start and not response[e:start].strip()]
        if prior:
            start = prior[-1]
        image = None
        if out.shows_image:
            image, next_image = next_image, next_image + 1
        spans.append((start, out.span[1], image))
    return spans


def last_round_start(response: str) -> int:
    """Character offset where the last code round begins (0 with fewer than two code blocks)."""
    blocks = code_blocks(response)
    if len(blocks) < 2:
        return 0
    last_code = blocks[-1].span[0]
    ends = [out.span[1] for out in sandbox_outputs(response) if out.span[1] <= last_code]
    return ends[-1] if ends else 0


def response_pieces(response: str, last_round_only: bool = False) -> list[Piece]:
    """The assistant turn: model text (trainable), harness spans (never), then <|im_end|> (trainable)."""
    cutoff = last_round_start(response) if last_round_only else 0
    pieces: list[Piece] = []
    pos = 0
    for start, end, image in harness_spans(response):
        pieces += _model_text(response, pos, start, cutoff)
        out = response[start:end]
        if image is None:
            pieces.append(Piece(out, data=True))
        else:  # the body (a path or <image>) is replaced by the image itself, as the agent loop feeds it
            open_at = out.index("<sandbox_output>") + len("<sandbox_output>")
            pieces += [Piece(out[:open_at]), Piece(image=image), Piece("</sandbox_output>")]
        pos = end
    pieces += _model_text(response, pos, len(response), cutoff)
    pieces += [Piece("<|im_end|>", trainable=True), Piece("\n")]
    return [p for p in pieces if p.text or p.image is not None]


def _model_text(response: str, start: int, end: int, cutoff: int) -> list[Piece]:
    """Model-written text in [start, end); the part before `cutoff` is context only."""
    if end <= cutoff:
        return [Piece(response[start:end])]
    if start >= cutoff:
        return [Piece(response[start:end], trainable=True)]
    return [Piece(response[start:cutoff]), Piece(response[cutoff:end], trainable=True)]


def images_shown(response: str) -> int:
    """How many processed images the response's sandbox outputs show."""
    return sum(1 for out in sandbox_outputs(response) if out.shows_image)
