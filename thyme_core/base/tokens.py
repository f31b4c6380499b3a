"""Qwen2.5-VL's special tokens, and encoding text as data (shared by the agent loop's codec and SFT examples).

Text printed by sandboxed code is data: a special-token literal in it must become ordinary text tokens,
never the special token (it could end the turn or forge an image slot). One helper for both the loop and
SFT example building, so the two tokenize fed-back text the same way.
"""

from __future__ import annotations

VISION_START, IMAGE_PAD, VISION_END = "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"
VIDEO_PAD = "<|video_pad|>"
IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIALS = (END_OF_TEXT, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)

def encode_as_data(tokenizer, text: str, special_ids) -> list[int]:
    """A Hugging Face tokenizer's ids for `text` with special-token literals split into plain text. Where a
    tokenizer ignores `split_special_tokens`, each literal is cut after its first character and the parts
    are encoded apart, which no added-token matcher can join again."""
    ids = list(tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))
    if not special_ids.intersection(ids):
        return ids
    out, start = [], 0
    for i in range(len(text)):
        if any(text.startswith(t, i) for t in SPECIALS):
            out += tokenizer.encode(text[start:i + 1], add_special_tokens=False)
            start = i + 1
    return out + list(tokenizer.encode(text[start:], add_special_tokens=False))
