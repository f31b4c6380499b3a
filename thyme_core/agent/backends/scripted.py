"""`scripted`: a backend that "generates" a given response, for tests, demos and replaying recorded responses.

The script is the response with its recorded `<sandbox_output>` blocks removed (the loop inserts the real
ones). Each call continues the script from where the model's own text stands, up to and including the first
stop string, as a model stopped by that string would; the end of the script is an EOS. Responses are one
text for every sample, or per sample (a dict keyed by sample id, or by the part after its last ":", e.g. the
benchmark index or an RL group member).

`steer_through_scripts` does the same to a real model: a LogitsProcessor for TransformersBackend forces each
next token of the sample's script, so inputs, forward passes, sampling calls and stopping stay the model's own
(tests and benchmarks of a random model, which writes no code by itself).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping

from thyme_core.agent.backends.base import Backend, Generation, GenerationRequest
from thyme_core.agent.codec import IM_END, ByteCodec, Codec
from thyme_core.base.errors import ThymeError

_FED_BACK = re.compile(r"\n?<sandbox_output>.*?</sandbox_output>", re.S)


def script_of(response: str) -> str:
    """The model's own text of a recorded response: each sandbox output, with the line break the loop puts
    before it, removed.

    >>> script_of("<code>x</code>\\n<sandbox_output>7</sandbox_output>\\nso <answer>7</answer>")
    '<code>x</code>\\nso <answer>7</answer>'
    """
    return _FED_BACK.sub("", response)


def load_responses(path: str | Path) -> str | dict[str, str]:
    """A text file (one response for all samples) or a .jsonl of {"index" or "sample_id", "response"}."""
    path = Path(path)
    if not path.is_file():
        raise ThymeError(f"{path}: no such response file")
    if path.suffix != ".jsonl":
        return path.read_text()
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            key = row.get("sample_id", row.get("index"))
            if key is None or "response" not in row:
                raise ThymeError(f"{path}:{n}: each line needs `index` (or `sample_id`) and `response`")
            out[str(key)] = row["response"]
    return out


def script_for(responses: str | Mapping[str, str], sample_id: str) -> str:
    """The script of a sample: the one response, or the sample's (by id, then by the part after its last ":")."""
    if isinstance(responses, str):
        return script_of(responses)
    for key in (sample_id, sample_id.rsplit(":", 1)[-1]):
        if key in responses:
            return script_of(responses[key])
    raise ThymeError(f"scripted backend: no response for sample {sample_id!r}")


class ScriptedBackend(Backend):
    def __init__(self, responses: str | Mapping[str, str], codec: Codec | None = None):
        super().__init__(codec or ByteCodec(), name="scripted", model="scripted")
        self.responses = responses

    def generate(self, request: GenerationRequest) -> Generation:
        script = script_for(self.responses, request.sample_id)
        done = request.generated_text
        if not script.startswith(done):
            raise ThymeError("scripted backend: the trajectory left its script (was the text re-tokenized?)")
        rest = script[len(done):]
        hits = [(rest.find(s) + len(s), s) for s in request.stop if s in rest]
        end, stop = min(hits) if hits else (len(rest), "")
        text = rest[:end]
        ids = self.codec.encode(text)
        if len(ids) > request.max_new_tokens:
            ids = ids[:request.max_new_tokens]
            return Generation(ids, self.codec.decode(ids), "length")
        if stop:
            return Generation(ids, text, "stop", stop)
        eos = self.codec.token_id(IM_END)
        if len(ids) + 1 > request.max_new_tokens:
            return Generation(ids, text, "length")
        return Generation(ids + [eos], text, "eos")


class _FollowScript:
    """Forces the next token of the script's rest, then EOS (a transformers LogitsProcessor)."""

    def __init__(self, want: list[int], eos: int, n_in: int):
        self.want, self.eos, self.n_in = want, eos, n_in

    def __call__(self, input_ids, scores):
        import torch

        step = input_ids.shape[1] - self.n_in
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.want[step] if step < len(self.want) else self.eos] = 0.0
        return forced


def steer_through_scripts(responses: str | Mapping[str, str], codec: Codec):
    """`TransformersBackend.logits_processors` that walk a real model through each sample's script (picked
    as the scripted backend picks it): `(request, n_in) -> [LogitsProcessor]`. The script must tokenize the
    same in pieces as whole (true of the tiny model's tokenizer at the loop's stop strings)."""

    def processors(request: GenerationRequest, n_in: int) -> list:
        script = script_for(responses, request.sample_id)
        if not script.startswith(request.generated_text):
            raise ThymeError("steered model: the trajectory left its script")
        want = codec.encode(script[len(request.generated_text):])
        return [_FollowScript(want, codec.token_id(IM_END), n_in)]

    return processors
