"""The one interface every generator implements, and what crosses it.

A backend continues a trajectory: it gets the compact token ids of everything so far (one pad per image),
the images fitted to their ledger sizes, the prompt and assistant parts as text (for chat APIs), a
temperature, stop strings and a token cap, and returns the token ids it generated, their text and why it
stopped. It never decides what happens next; the loop does (thyme_core/agent/loop.py).

`generate_many` continues several trajectories at once (the loop's lockstep steps). By default it calls
`generate` once per request, in order; a backend whose engine batches (vLLM) overrides it and sets
`batched`, and the loop then sends all of a step's requests in one call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from thyme_core.agent.codec import Codec


@dataclass(frozen=True)
class FedImage:
    """An image as the model sees it: a stored file, resized to (width, height) (multiples of 28)."""

    path: Path
    width: int
    height: int
    sha256: str = ""
    ref: str = ""  # the home-relative path the catalog stores

    def load(self):
        from PIL import Image

        with Image.open(self.path) as im:
            im = im.convert("RGB")
            if im.size != (self.width, self.height):
                im = im.resize((self.width, self.height), Image.Resampling.BICUBIC)
            return im


Part = Union[str, FedImage]


@dataclass(frozen=True)
class GenerationRequest:
    ids: list[int]  # compact ids of the whole trajectory so far
    images: list[FedImage]  # in the order their pads appear in `ids`
    messages: list[dict]  # system + user as OpenAI-style messages (the user image as {"type": "image"})
    assistant: list[Part]  # the assistant turn so far: text pieces and fed-back images, in order
    generated_text: str  # the model's own text so far (no sandbox output): what a script continues from
    max_new_tokens: int
    temperature: float
    stop: tuple[str, ...]
    seed: int | None = None
    sample_id: str = ""
    # Sampling filters, used only when temperature > 0 (greedy segments stay plain argmax): 1.0 / 0 / 1.0 = off.
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0


@dataclass(frozen=True)
class Generation:
    ids: list[int]  # exactly the tokens sampled (an EOS token included when the model ended with it)
    text: str  # their text, as the codec decodes it (without a final EOS token's text)
    finish: str  # "stop" (a stop string), "eos", or "length" (max_new_tokens)
    stop: str = ""  # the stop string matched, when finish == "stop"


@dataclass
class Backend:
    """Base class: subclasses set `codec` and implement `generate` (and, if they batch, `generate_many`)."""

    codec: Codec
    name: str = "base"
    model: str = field(default="")
    batched = False  # class-level: generate_many runs its requests as one engine batch

    def generate(self, request: GenerationRequest) -> Generation:
        raise NotImplementedError

    def generate_many(self, requests: list[GenerationRequest]) -> list[Generation]:
        """One Generation per request, in order; by default one `generate` after another."""
        return [self.generate(r) for r in requests]

    def close(self) -> None:
        pass


def cut_at_stop(ids: list[int], codec: Codec, stops: tuple[str, ...]) -> tuple[int, str]:
    """(n, stop): keep ids[:n], the shortest prefix whose text contains a stop string; (len, "") if none.

    Tokens are never split: the token that completes a stop string is kept whole, so the ledger holds
    exactly what was sampled even when that token carries a few characters past the stop string.
    """
    if not any(s in codec.decode(ids) for s in stops):
        return len(ids), ""
    for n in range(1, len(ids) + 1):
        text = codec.decode(ids[:n])
        found = [(text.find(s), s) for s in stops if s in text]
        if found:
            return n, min(found)[1]
    return len(ids), ""


def finish_of(ids: list[int], codec: Codec, stops: tuple[str, ...], max_new_tokens: int) -> Generation:
    """A Generation from raw sampled ids: cut after the first stop string, or after the first EOS."""
    n, stop = cut_at_stop(ids, codec, stops)
    eos = next((i for i, t in enumerate(ids[:n]) if t in codec.eos_ids), None)
    if eos is not None:
        kept = ids[:eos + 1]
        return Generation(kept, codec.decode(kept[:-1]), "eos")
    kept = ids[:n]
    if stop:
        return Generation(kept, codec.decode(kept), "stop", stop)
    return Generation(kept, codec.decode(kept), "length" if len(kept) >= max_new_tokens else "eos")
