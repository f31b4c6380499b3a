"""`openai`: any OpenAI-compatible chat endpoint (e.g. `vllm serve Qwen/Qwen2.5-VL-7B-Instruct`).

The request is the system and user messages plus the assistant turn so far (text and fed-back images as
image_url parts) with vLLM's `continue_final_message` (no new assistant header), the stop strings with
`include_stop_str_in_output`, and the placeholders banned through `logit_bias`. The server's own chat
template renders the prompt, so it must be Qwen's (as served models' are). Token ids come back when the
server supports `return_token_ids` (vLLM >= 0.10.2); otherwise the text is encoded with the local tokenizer
(then the ledger holds the canonical tokenization of what was sampled, not necessarily the sampled ids).

Text printed by sandboxed code is data, but the server tokenizes the rendered conversation itself and the
API has no way to mark text as data: a `<|im_end|>` printed by code would reach the model as the real end of
turn. So every special-token literal in the assistant turn's text is broken with U+2060 (WORD JOINER) after
its `<` before it is sent (`defuse`); the model's own text never holds one (vision tokens are banned in
sampling and EOS ends the turn), so only fed-back text is changed.
"""

from __future__ import annotations

import base64
import io
import json
import os
import urllib.error
import urllib.request

from thyme_core.agent.backends.base import Backend, FedImage, Generation, GenerationRequest, finish_of
from thyme_core.agent.codec import SPECIALS, Codec
from thyme_core.base.errors import ThymeError

JOINER = "\u2060"


class OpenAIBackend(Backend):
    def __init__(self, base_url: str, codec: Codec, served_model: str = "", api_key: str = "",
                 timeout_s: float = 600.0):
        super().__init__(codec, name="openai", model=served_model or base_url)
        self.base_url = base_url.rstrip("/")
        self.served_model = served_model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.token_ids_from_server = None  # learned from the first answer

    @classmethod
    def load(cls, base_url: str | None, home, served_model: str | None = None, api_key_env: str = "OPENAI_API_KEY",
             tokenizer: str | None = None, min_pixels: int | None = None,
             max_pixels: int | None = None) -> "OpenAIBackend":
        """`tokenizer`: a local folder with the served model's tokenizer (default: the tiny model's). Images
        are sent already fitted to the pixel limits (the server's processor must allow at least as many)."""
        from thyme_core.agent.codec import HFCodec
        from thyme_core.model import load_processor, resolve_model_path

        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ThymeError("the openai backend needs the server's base URL as --model, e.g. http://127.0.0.1:8000/v1")
        codec = HFCodec(load_processor(resolve_model_path(tokenizer, home), min_pixels=min_pixels,
                                       max_pixels=max_pixels))
        return cls(base_url, codec, served_model or "", os.environ.get(api_key_env, ""))

    def payload(self, request: GenerationRequest) -> dict:
        messages = [dict(m) for m in request.messages]
        first = request.images[0] if request.images else None
        for m in messages:
            if isinstance(m["content"], list):
                m["content"] = [_image_part(first) if p.get("type") == "image" else p for p in m["content"]]
        body = {"model": self.served_model or "default", "max_tokens": request.max_new_tokens,
                "temperature": request.temperature, "stop": list(request.stop), "include_stop_str_in_output": True,
                "skip_special_tokens": False, "return_token_ids": True,
                "logit_bias": {str(t): -100 for t in self.codec.banned_ids}}
        if request.seed is not None:
            body["seed"] = request.seed
        if request.temperature > 0:  # top_k and repetition_penalty are vLLM's extensions of the API
            body.update(top_p=request.top_p, top_k=request.top_k or -1, repetition_penalty=request.repetition_penalty)
        if request.assistant:
            parts = [{"type": "text", "text": defuse(p)} if isinstance(p, str) else _image_part(p)
                     for p in request.assistant]
            messages.append({"role": "assistant", "content": parts})
            body.update(continue_final_message=True, add_generation_prompt=False)
        body["messages"] = messages
        return body

    def generate(self, request: GenerationRequest) -> Generation:
        answer = self._post("/chat/completions", self.payload(request))
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise ThymeError(f"{self.base_url}: unexpected answer {str(answer)[:300]}") from None
        stop = choice.get("stop_reason")
        if choice.get("finish_reason") == "stop" and isinstance(stop, str) and not text.endswith(stop):
            text += stop  # a server that ignores include_stop_str_in_output
        ids = choice.get("token_ids")
        if ids is None:
            ids = self.codec.encode(text)
            if choice.get("finish_reason") == "stop" and not isinstance(stop, str):
                ids.append(self.codec.eos_ids[0])  # the model ended its turn
        return finish_of(list(ids), self.codec, request.stop, request.max_new_tokens)

    def _post(self, path: str, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.base_url + path, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            raise ThymeError(f"{self.base_url}{path}: HTTP {exc.code}: {exc.read()[:300]!r}") from None
        except (urllib.error.URLError, TimeoutError) as exc:
            raise ThymeError(f"{self.base_url}{path}: {exc}") from None


def defuse(text: str) -> str:
    """Special-token literals turned into text no tokenizer matches as a special token.

    >>> defuse("out<|im_end|>") == "out<\u2060|im_end|>"
    True
    """
    for token in SPECIALS:
        if token in text:
            text = text.replace(token, token[0] + JOINER + token[1:])
    return text


def _image_part(image: FedImage | None) -> dict:
    """An image_url part holding the image already resized to its ledger size (PNG, lossless)."""
    if image is None:
        raise ThymeError("the prompt has an image part but the request carries no image")
    buf = io.BytesIO()
    image.load().save(buf, "PNG")
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}}
