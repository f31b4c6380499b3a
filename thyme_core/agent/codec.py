"""Text <-> token ids and image sizing for the loop, independent of which backend generates.

`HFCodec` wraps a Qwen2.5-VL processor (tokenizer + image pixel limits). `ByteCodec` is a hand-written
stand-in with Qwen's special tokens over a byte vocabulary: the scripted backend uses it when no model is
given, so evaluation of recorded responses needs no model files and no torch at all.

`encode` is for text the harness writes (prompt markup, tags) and the model generates; `encode_data` is for
text that is data, above all what sandboxed code printed: a special token spelled out in it (`<|im_end|>`,
`<|image_pad|>`, `<|vision_start|>`) becomes ordinary text tokens, never the special token, so code cannot
end the turn, forge an image slot or open a vision block by printing.
"""

from __future__ import annotations

from dataclasses import dataclass

from thyme_core.base.tokens import (  # noqa: F401  (re-exported: the loop and backends import them from here)
    END_OF_TEXT, IM_END, IM_START, IMAGE_PAD, SPECIALS, VIDEO_PAD, VISION_END, VISION_START, encode_as_data)

# Qwen2.5-VL's processor defaults.
DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS = 56 * 56, 28 * 28 * 1280


@dataclass
class Codec:
    """What the loop needs from a tokenizer: encode/decode, special ids, image pixel limits."""

    name: str
    min_pixels: int
    max_pixels: int

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_data(self, text: str) -> list[int]:
        """Text as data: special-token literals in it are encoded as plain text."""
        raise NotImplementedError

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset(self.token_id(t) for t in SPECIALS)

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def token_id(self, token: str) -> int:
        raise NotImplementedError

    @property
    def image_pad_id(self) -> int:
        return self.token_id(IMAGE_PAD)

    @property
    def eos_ids(self) -> tuple[int, ...]:
        return self.token_id(IM_END), self.token_id(END_OF_TEXT)

    @property
    def banned_ids(self) -> tuple[int, ...]:
        """Tokens a sampler must never emit: image/video placeholders and vision brackets."""
        return tuple(self.token_id(t) for t in (IMAGE_PAD, VIDEO_PAD, VISION_START, VISION_END))


class ByteCodec(Codec):
    """Special tokens get ids 0..6, bytes 7..262; every text round-trips exactly.

    >>> c = ByteCodec()
    >>> c.decode(c.encode("<|im_start|>hé")) == "<|im_start|>hé"
    True
    """

    def __init__(self, min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS):
        super().__init__("bytes", min_pixels, max_pixels)
        self._special = {t: i for i, t in enumerate(SPECIALS)}

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        i = 0
        while i < len(text):
            special = next((t for t in SPECIALS if text.startswith(t, i)), None)
            if special:
                ids.append(self._special[special])
                i += len(special)
                continue
            j = min((k for k in (text.find("<|", i + 1),) if k != -1), default=len(text))
            ids += [b + len(SPECIALS) for b in text[i:j].encode()]
            i = j
        return ids

    def encode_data(self, text: str) -> list[int]:
        """
        >>> ByteCodec().encode_data("<|im_end|>")[:2] == [ord("<") + 7, ord("|") + 7]
        True
        """
        return [b + len(SPECIALS) for b in text.encode()]

    def decode(self, ids: list[int]) -> str:
        out, buf = [], bytearray()
        for t in ids:
            if t < len(SPECIALS):
                out.append(buf.decode(errors="replace"))
                buf = bytearray()
                out.append(SPECIALS[t])
            else:
                buf.append(t - len(SPECIALS))
        out.append(buf.decode(errors="replace"))
        return "".join(out)

    def token_id(self, token: str) -> int:
        return self._special[token]


class HFCodec(Codec):
    """A Hugging Face Qwen2.5-VL processor's tokenizer and image limits."""

    def __init__(self, processor, name: str = "hf"):
        size = processor.image_processor.size
        min_pixels = int(getattr(size, "shortest_edge", None) or size["shortest_edge"])
        max_pixels = int(getattr(size, "longest_edge", None) or size["longest_edge"])
        super().__init__(name, min_pixels, max_pixels)
        self.tokenizer = processor.tokenizer
        self.processor = processor

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def encode_data(self, text: str) -> list[int]:
        return encode_as_data(self.tokenizer, text, self.special_ids)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_id(self, token: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise KeyError(f"the tokenizer has no {token}")
        return int(tid)

