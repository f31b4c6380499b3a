"""The agent loop: generate, run the code, feed the result back, until an answer.

One trajectory: the prompt (system, image, question) enters the ledger; the model generates until `</code>`,
`</answer>` or EOS; a code block runs in the trajectory's own sandbox session (later blocks see earlier
variables) and its result is appended as `\\n<sandbox_output>...</sandbox_output>` (images as image input,
else the printed text, else the error), mask 0; generation goes on in the same assistant turn. It stops at
an answer, EOS, the round limit, or the token budget. With separate text and code temperatures a round is
generated in segments: text until `<code>` at one temperature, code until `</code>` at the other.

Fed-back images are fitted to what the budget leaves (ledger.fit_image); when not even the smallest image
fits, the trajectory ends ("budget") rather than cutting image tokens.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from thyme_core.agent.backends.base import Backend, FedImage, GenerationRequest, Part
from thyme_core.agent.codec import IMAGE_PAD, VISION_END, VISION_START
from thyme_core.agent.config import AgentConfig
from thyme_core.agent.answers import extract_answer
from thyme_core.agent.ledger import TokenLedger, fit_image, image_tokens
from thyme_core.agent.prompt import Prompt
from thyme_core.thyme_format import CODE_BLOCK_RE, STOP_STRINGS, strip_fences

SANDBOX_OPEN, SANDBOX_CLOSE = "\n<sandbox_output>", "</sandbox_output>"
CODE_OPEN, CODE_CLOSE, ANSWER_CLOSE = "<code>", "</code>", "</answer>"


@dataclass(frozen=True)
class AgentSample:
    sample_id: str
    question: str
    image: Path  # the stored input image (host path)
    image_ref: str  # the path the prompt shows (home-relative)
    width: int
    height: int
    sha256: str = ""


@dataclass(frozen=True)
class Turn:
    round: int  # 0-based; round k ends with the k-th code block (or the answer)
    text: str  # the model's text of this round
    code: str  # the code it ended with ("" when it ended otherwise)
    generated_tokens: int
    finish: str  # code / answer / eos / length / budget


@dataclass(frozen=True)
class Execution:
    round: int
    status: str  # a sandbox Status, or "no_code" (</code> without <code>)
    error: str
    stdout: str
    duration_s: float
    images: tuple[FedImage, ...]  # images fed back (stored, fitted)
    fed_back: str  # image / text / error / none
    feedback_tokens: int


@dataclass
class Trajectory:
    sample: AgentSample
    ledger: TokenLedger
    response: str = ""  # the assistant turn as text (fed-back images shown by their stored path)
    turns: list[Turn] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    stop_reason: str = ""  # answer / eos / round_limit / budget / length
    answer: str = ""
    generate_s: float = 0.0
    sandbox_s: float = 0.0
    total_s: float = 0.0


# Stores a sandbox output file in the data home: (sha256, stored host path, home-relative path).
StoreImage = Callable[[Path], tuple[str, Path, str]]


class _Run:
    """The mutable state of one trajectory while it is generated."""

    def __init__(self, sample, prompt, backend, config):
        self.sample, self.prompt, self.backend, self.config = sample, prompt, backend, config
        self.codec = backend.codec
        text_len = len(self.codec.encode(prompt.head())) + len(self.codec.encode(prompt.tail())) + 3
        limits = self.codec.min_pixels, self.codec.max_pixels
        size = (fit_image(sample.width, sample.height, *limits, config.max_length - text_len - config.reserve_tokens)
                or fit_image(sample.width, sample.height, *limits))  # too long either way: ends at "budget"
        ledger = prompt.start_ledger(self.codec, *size, sample.sha256)
        self.images = [FedImage(sample.image, *size, sample.sha256, sample.image_ref)]
        self.assistant: list[Part] = []
        self.generated = ""
        self.traj = Trajectory(sample, ledger)
        digest = hashlib.sha256(sample.sample_id.encode()).digest()
        self.seed = (config.seed + int.from_bytes(digest[:4], "big")) % (2**31)

    def _filters(self, temperature: float) -> dict:
        """The sampling filters of a sampled segment; a greedy one gets none (its argmax is left alone)."""
        cfg = self.config
        if temperature <= 0:
            return {}
        return {"top_p": cfg.top_p, "top_k": cfg.top_k, "repetition_penalty": cfg.repetition_penalty}

    @property
    def room(self) -> int:
        return self.config.max_length - len(self.traj.ledger)

    def generate_round(self, round_no: int) -> Turn:
        """One model turn: until </code>, </answer>, EOS or a limit; in segments if temperatures differ."""
        text, n_tokens, cfg = "", 0, self.config
        while True:
            in_code = self.generated.rfind(CODE_OPEN) > self.generated.rfind(CODE_CLOSE)
            if cfg.split_temperatures:
                temperature = cfg.code_temperature if in_code else cfg.text_temperature
                stops = (CODE_CLOSE,) if in_code else (CODE_OPEN, *STOP_STRINGS)
            else:
                temperature, stops = cfg.text_temperature, STOP_STRINGS
            cap = min(cfg.max_new_tokens - n_tokens, self.room)
            if cap <= 0:
                return Turn(round_no, text, "", n_tokens, "budget" if self.room <= 0 else "length")
            started = time.perf_counter()
            gen = self.backend.generate(GenerationRequest(
                ids=list(self.traj.ledger.ids), images=list(self.images), messages=self.prompt.messages(),
                assistant=list(self.assistant), generated_text=self.generated, max_new_tokens=cap,
                temperature=temperature, stop=stops, seed=self.seed + len(self.traj.ledger),
                sample_id=self.sample.sample_id, **self._filters(temperature)))
            self.traj.generate_s += time.perf_counter() - started
            self.traj.ledger.add_text(gen.ids, generated=True)
            self.generated += gen.text
            self._say(gen.text)
            text += gen.text
            n_tokens += len(gen.ids)
            if gen.finish == "stop" and gen.stop == CODE_OPEN:
                continue
            if gen.finish == "stop":
                finish = "code" if gen.stop == CODE_CLOSE else "answer"
            elif gen.finish == "length":
                finish = "budget" if self.room <= 0 else "length"
            else:
                finish = "eos"
            code = ""
            if finish == "code":
                blocks = list(CODE_BLOCK_RE.finditer(text[:text.rfind(CODE_CLOSE) + len(CODE_CLOSE)]))
                code = strip_fences(blocks[-1].group("body")) if blocks else ""
            return Turn(round_no, text, code, n_tokens, finish)

    def _say(self, text: str) -> None:
        self.traj.response += text
        if self.assistant and isinstance(self.assistant[-1], str):
            self.assistant[-1] += text
        elif text:
            self.assistant.append(text)

    def feed_back(self, images: list[tuple[str, Path, str]], text: str) -> tuple[list[FedImage], int] | None:
        """Append one sandbox output (mask 0); None (nothing appended) when it cannot fit the budget."""
        codec, ledger = self.codec, self.traj.ledger
        open_ids, close_ids, text_ids = codec.encode(SANDBOX_OPEN), codec.encode(SANDBOX_CLOSE), codec.encode(text)
        vs, ve = codec.token_id(VISION_START), codec.token_id(VISION_END)
        left = self.room - len(open_ids) - len(close_ids) - len(text_ids) - self.config.reserve_tokens
        fitted = []
        for sha, path, rel in images:
            from PIL import Image

            with Image.open(path) as im:
                w, h = im.size
            size = fit_image(w, h, codec.min_pixels, codec.max_pixels, max_tokens=left - 2)  # 2: vision start/end
            if size is None:
                return None
            fitted.append((FedImage(path, *size, sha, rel), rel))
            left -= image_tokens(*size) + 2
        if left < 0:
            return None
        start = len(ledger)
        ledger.add_text(open_ids, generated=False)
        self._say(SANDBOX_OPEN)
        for fed, rel in fitted:
            ledger.add_image([vs], [ve], fed.width, fed.height, "sandbox", fed.sha256)
            self.images.append(fed)
            self.assistant.append(fed)
            self.traj.response += rel
        ledger.add_text(text_ids + close_ids, generated=False)
        self._say(text + SANDBOX_CLOSE)
        return [f for f, _ in fitted], len(ledger) - start


def run_trajectory(sample: AgentSample, backend: Backend, pool, config: AgentConfig, store_image: StoreImage,
                   session_id: str, prompt: Prompt) -> Trajectory:
    """Generate one trajectory; the sandbox session is closed at the end whatever happens."""
    from thyme_core.agent.feedback import execute

    started = time.perf_counter()
    run = _Run(sample, prompt, backend, config)
    traj = run.traj
    try:
        for round_no in range(config.max_rounds + 1):
            turn = run.generate_round(round_no)
            traj.turns.append(turn)
            if turn.finish != "code":
                traj.stop_reason = turn.finish
                break
            if round_no == config.max_rounds:
                traj.stop_reason = "round_limit"
                break
            t0 = time.perf_counter()
            outcome = execute(turn.code, sample, pool, session_id, config, store_image)
            traj.sandbox_s += time.perf_counter() - t0
            fed = run.feed_back(outcome.images, outcome.text)
            if fed is None:
                traj.executions.append(outcome.record(round_no, (), "none", 0))
                traj.stop_reason = "budget"
                break
            traj.executions.append(outcome.record(round_no, tuple(fed[0]), outcome.kind, fed[1]))
    finally:
        pool.close_session(session_id)
    traj.answer = extract_answer(traj.response)
    traj.total_s = time.perf_counter() - started
    return traj
