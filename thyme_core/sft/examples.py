"""Training examples: a catalog sample -> token ids, labels and image slots, or a drop with its reason.

The prompt is the contract of agent/prompt.py: the system prompt text (ExampleOptions, from the config's
file) and the user turn rebuilt from the stored question (`user_turn`: `<image>` tag, the cleaned question,
the image's home path and size, the format footer), so RL and evaluation start from the very prompt SFT
trains on. Pieces from masking.py are tokenized one by one; an image slot becomes <|vision_start|>, as many
<|image_pad|> as the resized image has merged patches, <|vision_end|>. Labels are -100 wherever the piece
is not trainable, so sandbox outputs (their text and their image tokens) never carry loss. Sandbox output
text is data: special-token literals in it (`<|im_end|>`, `<|image_pad|>`) are tokenized as plain text, as
the agent loop feeds them (codec.encode_data), so printed text never forges an image slot or ends a turn.
The image grid is computed from the image header and the processor's pixel limits (the same smart_resize the processor
applies), so lengths are known without decoding pixels; collate.py decodes them per batch.

An example longer than `max_length` is dropped with reason `too_long`, never truncated: a cut could fall
inside an image block or remove the answer. Every drop carries a reason code and is counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from PIL import Image

from thyme_core.agent.prompt import Prompt, load_system_prompt, text_turn, user_turn
from thyme_core.sft.masking import Piece, images_shown, prompt_pieces, response_pieces

IGNORE = -100


class Drop(StrEnum):
    TOO_LONG = "too_long"  # more tokens than max_length (never truncated)
    IMAGE_MISSING = "image_missing"  # an image file of the sample is not in the store
    IMAGE_UNREADABLE = "image_unreadable"  # the file is there but PIL cannot read its size
    IMAGE_COUNT_MISMATCH = "image_count_mismatch"  # outputs showing images != processed images listed
    NO_LABELS = "no_labels"  # nothing model-written is left to learn from


@dataclass(frozen=True)
class ExampleOptions:
    max_length: int
    last_round_only: bool = False
    system_prompt: str = ""  # the system prompt's text; '' = infra/prompts/system.txt (agent/prompt.py)
    min_pixels: int = 4 * 28 * 28
    max_pixels: int = 3_211_264


@dataclass
class Example:
    sample_id: str
    input_ids: list[int]
    labels: list[int]
    images: list[Path] = field(default_factory=list)  # absolute paths, in the order they appear
    grids: list[tuple[int, int, int]] = field(default_factory=list)  # (t, h, w) patches per image

    @property
    def has_image(self) -> bool:
        return bool(self.images)

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def n_label_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


@dataclass(frozen=True)
class Dropped:
    sample_id: str
    reason: Drop
    detail: str


class TokenSpec:
    """What the builder needs from a processor: tokenizer, special ids, patch geometry."""

    def __init__(self, processor):
        self.tokenizer = processor.tokenizer
        ip = processor.image_processor
        self.patch, self.merge, self.temporal = ip.patch_size, ip.merge_size, ip.temporal_patch_size
        ids = self.tokenizer.convert_tokens_to_ids
        self.vision_start, self.image_pad, self.vision_end = (
            ids("<|vision_start|>"), ids("<|image_pad|>"), ids("<|vision_end|>"))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_data(self, text: str) -> list[int]:
        from thyme_core.base.tokens import SPECIALS, encode_as_data

        specials = frozenset(self.tokenizer.convert_tokens_to_ids(list(SPECIALS)))
        return encode_as_data(self.tokenizer, text, specials)

    def grid(self, path: Path, min_pixels: int, max_pixels: int) -> tuple[int, int, int]:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        width, height = image_size(path)
        h, w = smart_resize(height, width, factor=self.patch * self.merge, min_pixels=min_pixels,
                            max_pixels=max_pixels)
        return 1, h // self.patch, w // self.patch


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header (no pixels decoded)."""
    with Image.open(path) as img:
        return img.size


def build_example(sample: dict, home_root: Path, spec: TokenSpec, opts: ExampleOptions) -> Example | Dropped:
    """One catalog row (id, question, response, image_paths, has_image) -> Example, or Dropped with a reason."""
    sid = sample["id"]
    paths = [Path(home_root) / p for p in (sample.get("image_paths") or [])]
    if sample["has_image"] and images_shown(sample["response"]) != len(paths) - 1:
        return Dropped(sid, Drop.IMAGE_COUNT_MISMATCH,
                       f"{images_shown(sample['response'])} outputs show images, {len(paths) - 1} given")
    try:
        grids = [spec.grid(p, opts.min_pixels, opts.max_pixels) for p in paths]
        user = (user_turn(sample["question"], sample["image_paths"][0], *image_size(paths[0]))
                if sample["has_image"] else text_turn(sample["question"]))
    except FileNotFoundError as exc:
        return Dropped(sid, Drop.IMAGE_MISSING, str(exc))
    except (OSError, ValueError) as exc:
        return Dropped(sid, Drop.IMAGE_UNREADABLE, str(exc))
    pieces = prompt_pieces(Prompt(opts.system_prompt or load_system_prompt(), user))
    pieces += response_pieces(sample["response"], opts.last_round_only)
    input_ids, labels = _tokenize(pieces, grids, spec)
    if len(input_ids) > opts.max_length:
        return Dropped(sid, Drop.TOO_LONG, f"{len(input_ids)} tokens > max_length {opts.max_length}")
    if all(x == IGNORE for x in labels):
        return Dropped(sid, Drop.NO_LABELS, "no model-written tokens")
    order = [p.image for p in pieces if p.image is not None]
    return Example(sid, input_ids, labels, [paths[i] for i in order], [grids[i] for i in order])


def _tokenize(pieces: list[Piece], grids: list[tuple[int, int, int]], spec: TokenSpec):
    input_ids: list[int] = []
    labels: list[int] = []
    for piece in pieces:
        if piece.image is not None:
            t, h, w = grids[piece.image]
            ids = [spec.vision_start] + [spec.image_pad] * (t * h * w // spec.merge**2) + [spec.vision_end]
        else:
            ids = spec.encode_data(piece.text) if piece.data else spec.encode(piece.text)
        input_ids += ids
        labels += ids if piece.trainable else [IGNORE] * len(ids)
    return input_ids, labels


def build_examples(samples, home_root: Path, processor, opts: ExampleOptions):
    """(examples, drops) for an iterable of catalog rows; drops keep their reason codes."""
    spec = TokenSpec(processor)
    examples, drops = [], []
    for sample in samples:
        result = build_example(sample, home_root, spec, opts)
        (drops if isinstance(result, Dropped) else examples).append(result)
    return examples, drops
