"""`scripted`: a backend that "generates" a given response, for tests, demos and replaying recorded responses.

The script is the response with its recorded `<sandbox_output>` blocks removed (the loop inserts the real
ones). Each call continues the script from where the model's own text stands, up to and including the first
stop string, as a model stopped by that string would; the end of the script is an EOS. Responses are one
text for every sample, or per sample (a dict keyed by sample id or benchmark index).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping

from thyme_core.agent.backends.base import Backend, Generation, GenerationRequest
from thyme_core.agent.codec import IM_END, ByteCodec, Codec
from thyme_core.errors import ThymeError

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


class ScriptedBackend(Backend):
    def __init__(self, responses: str | Mapping[str, str], codec: Codec | None = None):
        super().__init__(codec or ByteCodec(), name="scripted", model="scripted")
        self.responses = responses

    def _script(self, sample_id: str) -> str:
        if isinstance(self.responses, str):
            return script_of(self.responses)
        for key in (sample_id, sample_id.rsplit(":", 1)[-1]):
            if key in self.responses:
                return script_of(self.responses[key])
        raise ThymeError(f"scripted backend: no response for sample {sample_id!r}")

    def generate(self, request: GenerationRequest) -> Generation:
        script = self._script(request.sample_id)
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
