"""Exact token accounting of one trajectory: token ids, the loss mask, and where each image sits.

The ledger keeps the *compact* form the vLLM docs and our trainers agree on: one `<|image_pad|>` per image,
between `<|vision_start|>` and `<|vision_end|>`, plus one ImageSlot per image with its grid. The transformers
forward pass needs the *expanded* form, each pad repeated grid_t*grid_h*grid_w/merge^2 times; `expanded()`
builds it, with the mask and image spans carried along. vLLM expands pads itself: give it the compact ids.

Mask: 1 = the model generated this token (it carries loss in RL/SFT), 0 = prompt and sandbox output (text
and image tokens alike). Lengths and budgets are always counted in expanded tokens, because that is what
the model's context holds.

Images are resized *before* they enter the ledger (`fit_image`) to sides that are multiples of 28 and a pixel
count the token budget allows, so the processor, vLLM and the ledger all agree on the token count, and no
image block is ever cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

PATCH = 14
MERGE = 2
FACTOR = PATCH * MERGE  # a side multiple of 28 px maps to whole merged tokens
PIXELS_PER_TOKEN = FACTOR * FACTOR


@dataclass(frozen=True)
class ImageSlot:
    """One image of the trajectory: its compact position, its size as fed, and who put it there."""

    offset: int  # index of its `<|image_pad|>` in the compact ids
    width: int
    height: int
    source: str  # "prompt" or "sandbox"
    sha256: str = ""

    @property
    def grid_thw(self) -> tuple[int, int, int]:
        return 1, self.height // PATCH, self.width // PATCH

    @property
    def n_tokens(self) -> int:
        return image_tokens(self.width, self.height)


def image_tokens(width: int, height: int) -> int:
    """Merged tokens of an image already sized to multiples of 28: (w/28)*(h/28).

    >>> image_tokens(56, 84)
    6
    """
    return (width // FACTOR) * (height // FACTOR)


def fit_image(width: int, height: int, min_pixels: int, max_pixels: int, max_tokens: int | None = None
              ) -> tuple[int, int] | None:
    """The size (multiples of 28) an image is fed at: Qwen2.5-VL's smart_resize, with the pixel ceiling
    lowered to what `max_tokens` allows. None when even the smallest allowed size does not fit.

    >>> fit_image(1000, 800, 3136, 12845056)           # plenty of room: rounded to multiples of 28
    (1008, 812)
    >>> fit_image(1000, 800, 3136, 12845056, max_tokens=100)
    (308, 224)
    >>> fit_image(1000, 800, 3136, 12845056, max_tokens=3) is None   # min_pixels needs 4 tokens
    True
    """
    ceiling = max_pixels if max_tokens is None else min(max_pixels, max_tokens * PIXELS_PER_TOKEN)
    if ceiling < min_pixels or ceiling < PIXELS_PER_TOKEN:
        return None
    h = max(FACTOR, round(height / FACTOR) * FACTOR)
    w = max(FACTOR, round(width / FACTOR) * FACTOR)
    if h * w > ceiling:
        beta = math.sqrt(height * width / ceiling)
        h = max(FACTOR, math.floor(height / beta / FACTOR) * FACTOR)
        w = max(FACTOR, math.floor(width / beta / FACTOR) * FACTOR)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / FACTOR) * FACTOR
        w = math.ceil(width * beta / FACTOR) * FACTOR
    while h * w > ceiling and max(h, w) > FACTOR:  # a side clamped at 28 px: take it from the other
        h, w = (h - FACTOR, w) if h >= w else (h, w - FACTOR)
    while h * w < min_pixels and (h + FACTOR) * w <= ceiling:  # rounding down fell under min_pixels
        h, w = (h + FACTOR, w) if h <= w else (h, w + FACTOR)
    if h * w > ceiling or h * w < min_pixels:
        return None
    return w, h


@dataclass(frozen=True)
class Expanded:
    ids: list[int]
    mask: list[int]
    image_spans: list[tuple[int, int]]  # [start, stop) of each image's pads in the expanded ids


@dataclass
class TokenLedger:
    image_pad_id: int
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    images: list[ImageSlot] = field(default_factory=list)

    def __len__(self) -> int:
        """Expanded length: what the model's context holds."""
        return len(self.ids) + sum(s.n_tokens - 1 for s in self.images)

    def add_text(self, ids: list[int], generated: bool) -> None:
        if self.image_pad_id in ids:
            raise ValueError("image pads enter the ledger only through add_image")
        self.ids += ids
        self.mask += [int(generated)] * len(ids)

    def add_image(self, before: list[int], after: list[int], width: int, height: int, source: str,
                  sha256: str = "") -> ImageSlot:
        """`before` + one pad + `after` (the vision start/end tokens), all mask 0."""
        if width % FACTOR or height % FACTOR:
            raise ValueError(f"image {width}x{height} is not fitted to multiples of {FACTOR}")
        self.add_text(before, generated=False)
        slot = ImageSlot(len(self.ids), width, height, source, sha256)
        self.ids.append(self.image_pad_id)
        self.mask.append(0)
        self.images.append(slot)
        self.add_text(after, generated=False)
        return slot

    def expanded(self) -> Expanded:
        ids: list[int] = []
        mask: list[int] = []
        spans = []
        prev = 0
        for slot in self.images:
            ids += self.ids[prev:slot.offset]
            mask += self.mask[prev:slot.offset]
            spans.append((len(ids), len(ids) + slot.n_tokens))
            ids += [self.image_pad_id] * slot.n_tokens
            mask += [0] * slot.n_tokens
            prev = slot.offset + 1
        ids += self.ids[prev:]
        mask += self.mask[prev:]
        return Expanded(ids, mask, spans)

    def counts(self) -> dict[str, int]:
        """Expanded token counts by kind: prompt (before the first generated token), generated, sandbox, image."""
        first_gen = self.mask.index(1) if 1 in self.mask else len(self.mask)
        image_total = sum(s.n_tokens for s in self.images)
        prompt_images = sum(s.n_tokens - 1 for s in self.images if s.offset < first_gen)
        generated = sum(self.mask)
        prompt = first_gen + prompt_images
        return {"prompt": prompt, "generated": generated, "sandbox": len(self) - prompt - generated,
                "image": image_total, "total": len(self)}
