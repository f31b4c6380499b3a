"""The agent loop: generate, run the code, feed the result back, until an answer.

One trajectory: the prompt (system, image, question) enters the ledger; the model generates until `</code>`,
`</answer>` or EOS; a code block runs in the trajectory's own sandbox session (later blocks see earlier
variables) and its result is appended as `\\n<sandbox_output>...</sandbox_output>` (images as image input,
else the printed text, else the error), mask 0; generation goes on in the same assistant turn. It stops at
an answer, EOS, the round limit, the token budget or the image limit. With separate text and code
temperatures a round is generated in segments: text until `<code>` at one temperature, code until `</code>`
at the other.

Fed-back images are fitted to what the budget leaves (ledger.fit_image); when not even the smallest image
fits, the trajectory ends ("budget") rather than cutting image tokens. When an execution's images would take
the trajectory past `max_images` (the prompt image counts), it ends ("image_limit") without them.

Many trajectories run in lockstep (`run_trajectories`; one trajectory is the one-element case): each step
sends every active trajectory's next request to the backend together (`Backend.generate_many`), then runs
every code block that ended a round concurrently in the sandbox (a thread per run, each in its own session),
then feeds the outputs back. A backend that does not batch (`Backend.batched` False) gets the requests one
at a time, and each code block is sent to the sandbox as soon as its round ends, so the sandbox works while
the engine generates the next trajectory's segment. Each request carries its own seed (trajectory seed +
ledger length), so a deterministic backend gives the same trajectories whatever the batch. The sandbox pool
takes runs of different sessions from several threads (it locks per session and around its shared state).
Not covered: steps are not pipelined; a trajectory whose sandbox run ended early still waits for the
slowest run of its step before its next request (no continuous batching across steps).
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from thyme_core.agent.backends.base import Backend, FedImage, Generation, GenerationRequest, Part
from thyme_core.agent.codec import VISION_END, VISION_START
from thyme_core.agent.config import AgentConfig
from thyme_core.agent.feedback import Outcome, execute
from thyme_core.agent.answers import extract_answer
from thyme_core.agent.ledger import TokenLedger, fit_image, image_tokens
from thyme_core.agent.prompt import Prompt
from thyme_core.thyme_format import CODE_BLOCK_RE, STOP_STRINGS, strip_fences

SANDBOX_OPEN, SANDBOX_CLOSE = "\n<sandbox_output>", "</sandbox_output>"
CODE_OPEN, CODE_CLOSE, ANSWER_CLOSE = "<code>", "</code>", "</answer>"
MAX_SANDBOX_THREADS = 64  # threads only wait on the pool, which bounds the runs at once by its own `workers`


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


def _execution(outcome: Outcome, round_no: int, fed: tuple, kind: str, tokens: int) -> Execution:
    return Execution(round_no, outcome.status, outcome.error, outcome.stdout, outcome.duration_s, fed, kind, tokens)


@dataclass
class Trajectory:
    sample: AgentSample
    ledger: TokenLedger
    response: str = ""  # the assistant turn as text (fed-back images shown by their stored path)
    turns: list[Turn] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    stop_reason: str = ""  # answer / eos / round_limit / budget / length / image_limit
    answer: str = ""  # from the model's own text only (model_text), never from what code printed
    model_text: str = ""  # what the model generated, without the fed-back sandbox outputs
    generate_s: float = 0.0  # time in the generate calls that carried its requests (a batch call: all of it)
    sandbox_s: float = 0.0  # its own executions (image storing included), overlapped with others or not
    total_s: float = 0.0  # from the start of its batch to its end


@dataclass
class BatchTiming:
    """Where the wall time of one lockstep batch went. The engine is busy only inside generate calls, so
    everything else (waiting on sandbox runs, feeding back, bookkeeping) is `engine_wait_s`."""

    trajectories: int = 0
    steps: int = 0  # lockstep steps: rounds of requests sent to the backend
    wall_s: float = 0.0
    generate_s: float = 0.0  # wall time inside Backend.generate_many
    sandbox_s: float = 0.0  # the executions' own durations summed (work, not wall time)
    engine_wait_s: float = 0.0  # wall_s - generate_s

    def __add__(self, other: "BatchTiming") -> "BatchTiming":
        """Batches run one after another: every figure adds up."""
        return BatchTiming(*(getattr(self, f) + getattr(other, f) for f in
                             ("trajectories", "steps", "wall_s", "generate_s", "sandbox_s", "engine_wait_s")))

    @property
    def engine_wait_share(self) -> float:
        return self.engine_wait_s / self.wall_s if self.wall_s > 0 else 0.0


# Stores a sandbox output image's bytes in the data home: (sha256, stored host path, home-relative path).
StoreImage = Callable[[bytes], tuple[str, Path, str]]


class _Run:
    """The state of one trajectory while it is generated: the round in progress and what comes next."""

    def __init__(self, sample, prompt, backend, config, session_id: str):
        self.sample, self.prompt, self.config, self.session_id = sample, prompt, config, session_id
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
        self.round_no, self.round_text, self.round_tokens = 0, "", 0
        self.code: str | None = None  # the code block waiting for the sandbox
        self.done = False

    def _filters(self, temperature: float) -> dict:
        """The sampling filters of a sampled segment; a greedy one gets none (its argmax is left alone)."""
        cfg = self.config
        if temperature <= 0:
            return {}
        return {"top_p": cfg.top_p, "top_k": cfg.top_k, "repetition_penalty": cfg.repetition_penalty}

    @property
    def room(self) -> int:
        return self.config.max_length - len(self.traj.ledger)

    def next_request(self) -> GenerationRequest | None:
        """The next generation call of the round in progress; None when a limit ends the round first."""
        cfg = self.config
        in_code = self.generated.rfind(CODE_OPEN) > self.generated.rfind(CODE_CLOSE)
        if cfg.split_temperatures:
            temperature = cfg.code_temperature if in_code else cfg.text_temperature
            stops = (CODE_CLOSE,) if in_code else (CODE_OPEN, *STOP_STRINGS)
        else:
            temperature, stops = cfg.text_temperature, STOP_STRINGS
        cap = min(cfg.max_new_tokens - self.round_tokens, self.room)
        if cap <= 0:
            self._end_round("budget" if self.room <= 0 else "length")
            return None
        return GenerationRequest(
            ids=list(self.traj.ledger.ids), images=list(self.images), messages=self.prompt.messages(),
            assistant=list(self.assistant), generated_text=self.generated, max_new_tokens=cap,
            temperature=temperature, stop=stops, seed=self.seed + len(self.traj.ledger),
            sample_id=self.sample.sample_id, **self._filters(temperature))

    def take(self, gen: Generation) -> None:
        """Append one generation; it ends the round unless it stopped at `<code>` (the code segment is next)."""
        self.traj.ledger.add_text(gen.ids, generated=True)
        self.generated += gen.text
        self._say(gen.text)
        self.round_text += gen.text
        self.round_tokens += len(gen.ids)
        if gen.finish == "stop" and gen.stop == CODE_OPEN:
            return
        if gen.finish == "stop":
            finish = "code" if gen.stop == CODE_CLOSE else "answer"
        elif gen.finish == "length":
            finish = "budget" if self.room <= 0 else "length"
        else:
            finish = "eos"
        self._end_round(finish)

    def _end_round(self, finish: str) -> None:
        """Record the round's Turn; the trajectory ends, or its code block waits for the sandbox."""
        text, code = self.round_text, ""
        if finish == "code":
            blocks = list(CODE_BLOCK_RE.finditer(text[:text.rfind(CODE_CLOSE) + len(CODE_CLOSE)]))
            code = strip_fences(blocks[-1].group("body")) if blocks else ""
        self.traj.turns.append(Turn(self.round_no, text, code, self.round_tokens, finish))
        if finish != "code":
            self._stop(finish)
        elif self.round_no == self.config.max_rounds:
            self._stop("round_limit")
        else:
            self.code = code

    def _stop(self, reason: str) -> None:
        self.traj.stop_reason, self.done = reason, True

    def _say(self, text: str) -> None:
        self.traj.response += text
        if self.assistant and isinstance(self.assistant[-1], str):
            self.assistant[-1] += text
        elif text:
            self.assistant.append(text)

    def feed(self, outcome) -> None:
        """Feed one execution back (or end the trajectory at the image limit or the budget); next round."""
        round_no, self.code = self.round_no, None
        limit = self.config.max_images
        if limit and len(self.traj.ledger.images) + len(outcome.images) > limit:
            self.traj.executions.append(_execution(outcome, round_no, (), "none", 0))
            return self._stop("image_limit")
        fed = self.feed_back(outcome.images, outcome.text)
        if fed is None:
            self.traj.executions.append(_execution(outcome, round_no, (), "none", 0))
            return self._stop("budget")
        self.traj.executions.append(_execution(outcome, round_no, tuple(fed[0]), outcome.kind, fed[1]))
        self.round_no, self.round_text, self.round_tokens = round_no + 1, "", 0

    def feed_back(self, images: list[tuple[str, Path, str]], text: str) -> tuple[list[FedImage], int] | None:
        """Append one sandbox output (mask 0); None (nothing appended) when it cannot fit the budget."""
        codec, ledger = self.codec, self.traj.ledger
        # what the code printed is data: special-token literals in it stay plain text (codec.encode_data)
        open_ids, close_ids, text_ids = codec.encode(SANDBOX_OPEN), codec.encode(SANDBOX_CLOSE), codec.encode_data(text)
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


def run_trajectories(samples: list[AgentSample], backend: Backend, pool, config: AgentConfig,
                     store_image: StoreImage, session_ids: list[str], prompts: list[Prompt]
                     ) -> tuple[list[Trajectory], BatchTiming]:
    """Generate the trajectories of `samples` in lockstep (see the module docstring), in their order, and
    where the batch's time went. Each sandbox session is closed when its trajectory ends, and every one of
    them whatever happens."""
    if not len(samples) == len(session_ids) == len(prompts):
        raise ValueError("one session id and one prompt per sample")
    if len(set(session_ids)) != len(session_ids):
        raise ValueError("every trajectory needs its own sandbox session")
    started = time.perf_counter()
    runs = [_Run(s, p, backend, config, sid) for s, p, sid in zip(samples, prompts, session_ids)]
    timing = BatchTiming(trajectories=len(runs))
    open_sessions = set(session_ids)
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(len(runs), MAX_SANDBOX_THREADS)),
                                thread_name_prefix="thyme-sandbox") as threads:
            active = list(runs)
            while active:
                _step(active, backend, threads, pool, config, store_image, timing)
                for run in active:
                    if run.done:
                        _finish(run, started, pool, open_sessions)
                active = [r for r in active if not r.done]
    finally:
        for session_id in session_ids:
            if session_id in open_sessions:
                pool.close_session(session_id)
    timing.wall_s = time.perf_counter() - started
    timing.engine_wait_s = max(0.0, timing.wall_s - timing.generate_s)
    return [r.traj for r in runs], timing


def _step(active: list[_Run], backend: Backend, threads, pool, config, store_image, timing: BatchTiming) -> None:
    """One lockstep step: each active trajectory's next segment, then the sandbox runs of the rounds that
    ended with code (started as soon as their round ended), fed back in order."""
    def timed_execute(run: _Run, code: str):
        t0 = time.perf_counter()
        outcome = execute(code, run.sample, pool, run.session_id, config, store_image)
        return outcome, time.perf_counter() - t0

    asking = [(run, req) for run in active if (req := run.next_request()) is not None]
    chunk = len(asking) if backend.batched else 1
    pending = []
    for i in range(0, len(asking), max(chunk, 1)):
        part = asking[i:i + chunk]
        t0 = time.perf_counter()
        generations = backend.generate_many([req for _, req in part])
        took = time.perf_counter() - t0
        if len(generations) != len(part):
            raise RuntimeError(f"{backend.name}: {len(generations)} generations for {len(part)} requests")
        timing.generate_s += took
        for (run, _), gen in zip(part, generations):
            run.traj.generate_s += took
            run.take(gen)
            if run.code is not None:
                pending.append((run, threads.submit(timed_execute, run, run.code)))
    timing.steps += 1
    for run, future in pending:
        outcome, took = future.result()
        run.traj.sandbox_s += took
        timing.sandbox_s += took
        run.feed(outcome)


def _finish(run: _Run, started: float, pool, open_sessions: set[str]) -> None:
    open_sessions.discard(run.session_id)
    pool.close_session(run.session_id)
    traj = run.traj
    traj.model_text = run.generated
    traj.answer = extract_answer(run.generated)  # the model's own text: an <answer> printed by code is not one
    traj.total_s = time.perf_counter() - started


def run_trajectory(sample: AgentSample, backend: Backend, pool, config: AgentConfig, store_image: StoreImage,
                   session_id: str, prompt: Prompt) -> Trajectory:
    """Generate one trajectory (run_trajectories with one sample); its sandbox session is closed at the end."""
    (traj,), _ = run_trajectories([sample], backend, pool, config, store_image, [session_id], [prompt])
    return traj
