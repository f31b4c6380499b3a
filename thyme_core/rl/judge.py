"""The LLM judge: a small client for any OpenAI-compatible chat endpoint (vLLM serving a judge model).

The rewards ask it two things the rules cannot decide: does an open-ended answer match the solution
(accuracy), and does the end of the reasoning support the answer (consistency). A judge that fails must not
turn into a score of 0 (that would punish the policy for the judge's outage), so every call returns a
`Verdict`: a value, or None with a reason code (`JudgeFailure`) that lands next to the reward in SQL.

What it does: a concurrency limit shared by every caller of one `Judge`, a timeout per request, retries with
exponential backoff on 5xx / 429 / timeouts / refused connections (never on other 4xx or on a malformed reply:
at temperature 0 the same question gets the same bad reply), and strict parsing of the verdict: the reply must
be exactly "yes" or "no" (or a number in [0, 1] for kind="score"), after an optional <think> block, `**` and a
final full stop. It uses only the standard library (urllib), like the agent's OpenAI backend.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

from thyme_core.base.errors import ThymeError
from thyme_core.base.presets import setting as _f


class JudgeFailure(StrEnum):
    """Why a judged reward is missing. The reward is None, never 0."""

    TIMEOUT = "judge_timeout"  # no reply within timeout_s, on every attempt
    HTTP_ERROR = "judge_http_error"  # 5xx / 429 on every attempt, or any other non-2xx status at once
    CONNECTION = "judge_connection_error"  # refused / reset / DNS, on every attempt
    MALFORMED = "judge_malformed"  # the body is not a chat-completions JSON with a text reply
    NO_VERDICT = "judge_no_verdict"  # the reply text is not a strict yes/no (or score) verdict


@dataclass(frozen=True)
class Verdict:
    value: float | None  # 1.0 yes / 0.0 no, or the score; None when the judge failed
    reason: str = ""  # a JudgeFailure code when value is None
    detail: str = ""  # human-readable: the status, the exception, or the start of the bad reply
    attempts: int = 1
    text: str = ""  # the reply itself (kind="text": the caller reads it, e.g. VLMEvalKit's option matcher)

    @property
    def ok(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class JudgeConfig:
    base_url: str = _f("", "OpenAI-compatible base URL, e.g. http://127.0.0.1:8001/v1 (env THYME_JUDGE_URL)")
    model: str = _f("", "served model name sent as `model` (env THYME_JUDGE_MODEL); '' lets the server pick")
    api_key: str | None = _f(None, "bearer token; None reads the variable named by api_key_env")
    api_key_env: str = _f("THYME_JUDGE_API_KEY", "environment variable holding the key")
    require_key: bool = _f(False, "fail at start-up when no key is found (hosted endpoints); local vLLM needs none")
    timeout_s: float = _f(30.0, "seconds per request (connect + reply)")
    max_retries: int = _f(3, "extra attempts after a 5xx / 429 / timeout / connection error")
    backoff_s: float = _f(0.5, "first retry delay; doubled each retry, with up to 25% jitter")
    backoff_max_s: float = _f(8.0, "longest delay between two attempts")
    concurrency: int = _f(8, "requests in flight at once, over every caller of one Judge")
    max_tokens: int = _f(512, "reply length limit (room for a reasoning judge's <think> block)")
    temperature: float = _f(0.0, "sampling temperature of the judge (0: the same question, the same verdict)")

    def __post_init__(self):
        if not self.base_url.startswith(("http://", "https://")):
            raise ThymeError(f"judge base_url must be an http(s) URL, e.g. http://127.0.0.1:8001/v1, "
                             f"not {self.base_url!r}")
        if not (self.timeout_s > 0 and self.backoff_s >= 0 and self.backoff_max_s >= self.backoff_s):
            raise ThymeError("judge timeout_s > 0 and 0 <= backoff_s <= backoff_max_s are required")
        if self.max_retries < 0 or self.concurrency < 1 or self.max_tokens < 1:
            raise ThymeError("judge max_retries >= 0, concurrency >= 1 and max_tokens >= 1 are required")
        if self.require_key and not self.resolved_key():
            raise ThymeError(f"the judge at {self.base_url} needs an API key: set {self.api_key_env} "
                             f"or pass api_key")

    @classmethod
    def from_env(cls, **overrides) -> "JudgeConfig":
        """URL and model from THYME_JUDGE_URL / THYME_JUDGE_MODEL unless given."""
        overrides.setdefault("base_url", os.environ.get("THYME_JUDGE_URL", ""))
        overrides.setdefault("model", os.environ.get("THYME_JUDGE_MODEL", ""))
        return cls(**overrides)

    def resolved_key(self) -> str | None:
        return self.api_key if self.api_key is not None else os.environ.get(self.api_key_env) or None


_THINK = re.compile(r"^\s*<think>.*?</think>", re.S)
_NUMBER = re.compile(r"^(?:score\s*:\s*)?([01](?:\.\d+)?|\.\d+)$")


def parse_verdict(reply: str, kind: str = "yes_no") -> float | None:
    """The verdict in a judge's reply, or None when the reply is anything else.

    >>> parse_verdict("Yes."), parse_verdict("**no**"), parse_verdict("<think>hm</think> yes")
    (1.0, 0.0, 1.0)
    >>> parse_verdict("Yes, mostly"), parse_verdict("0.75", kind="score"), parse_verdict("1.5", kind="score")
    (None, 0.75, None)
    >>> parse_verdict("B", kind="text"), parse_verdict("  ", kind="text")  # any non-empty reply; read by the caller
    (1.0, None)
    """
    text = _THINK.sub("", reply).strip().lower()
    if len(text) >= 4 and text.startswith("**") and text.endswith("**"):
        text = text[2:-2].strip()
    text = text.removesuffix(".").strip()
    if kind == "yes_no":
        return {"yes": 1.0, "no": 0.0}.get(text)
    if kind == "score":
        m = _NUMBER.match(text)
        return float(m.group(1)) if m and 0.0 <= float(m.group(1)) <= 1.0 else None
    if kind == "text":
        return 1.0 if text else None
    raise ValueError(f"kind must be 'yes_no', 'score' or 'text', not {kind!r}")


def accuracy_messages(question: str, solution: str, answer: str) -> list[dict]:
    """The accuracy question: does the candidate answer mean the same as the reference?"""
    return [
        {"role": "system", "content": "You grade answers. Reply with exactly one word: yes or no."},
        {"role": "user", "content": f"Question:\n{question}\n\nReference answer:\n{solution}\n\n"
                                    f"Candidate answer:\n{answer}\n\n"
                                    "Does the candidate answer mean the same as the reference answer? "
                                    "Reply with exactly one word: yes or no."},
    ]


def consistency_messages(question: str, reasoning: str, answer: str) -> list[dict]:
    """The consistency question: does the end of the reasoning lead to this answer?"""
    return [
        {"role": "system", "content": "You check reasoning. Reply with exactly one word: yes or no."},
        {"role": "user", "content": f"Question:\n{question}\n\nEnd of the reasoning:\n{reasoning}\n\n"
                                    f"Final answer:\n{answer}\n\n"
                                    "Does the reasoning support this final answer (rather than a different one)? "
                                    "Reply with exactly one word: yes or no."},
    ]


class _Retryable(Exception):
    def __init__(self, reason: JudgeFailure, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Final(_Retryable):
    """A failure that another attempt would not fix (e.g. 400, 401, 404)."""


class Judge:
    """A client for one judge endpoint. Thread-safe; `ask_many` runs up to `concurrency` requests at once."""

    def __init__(self, config: JudgeConfig):
        self.config = config
        self._key = config.resolved_key()
        self._slots = threading.BoundedSemaphore(config.concurrency)

    def ask(self, messages: list[dict], kind: str = "yes_no") -> Verdict:
        """One verdict, after retries; a failure is a Verdict with value None and its reason code."""
        cfg = self.config
        last = _Retryable(JudgeFailure.CONNECTION, "no attempt made")
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                delay = min(cfg.backoff_max_s, cfg.backoff_s * 2 ** (attempt - 1))
                time.sleep(delay * (1 + 0.25 * random.random()))
            try:
                with self._slots:
                    body = self._post(messages)
            except _Final as exc:
                return Verdict(None, exc.reason, exc.detail, attempt + 1)
            except _Retryable as exc:
                last = exc
                continue
            return _verdict_of(body, kind, attempt + 1)
        return Verdict(None, last.reason, last.detail, cfg.max_retries + 1)

    def ask_many(self, batch: list[list[dict]], kind: str = "yes_no") -> list[Verdict]:
        """Verdicts in the order of `batch`."""
        if not batch:
            return []
        with ThreadPoolExecutor(max_workers=min(self.config.concurrency, len(batch))) as pool:
            return list(pool.map(lambda m: self.ask(m, kind), batch))

    def _post(self, messages: list[dict]) -> bytes:
        cfg = self.config
        payload = {"model": cfg.model or "default", "messages": messages, "max_tokens": cfg.max_tokens,
                   "temperature": cfg.temperature}
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        url = cfg.base_url.rstrip("/") + "/chat/completions"
        req = urllib.request.Request(url, json.dumps(payload).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=cfg.timeout_s) as r:
                return r.read()
        except urllib.error.HTTPError as exc:
            detail = f"HTTP {exc.code} from {url}"
            if exc.code >= 500 or exc.code == 429:
                raise _Retryable(JudgeFailure.HTTP_ERROR, detail) from None
            raise _Final(JudgeFailure.HTTP_ERROR, detail) from None
        except TimeoutError as exc:
            raise _Retryable(JudgeFailure.TIMEOUT, f"{url}: {exc}") from None
        except urllib.error.URLError as exc:
            code = JudgeFailure.TIMEOUT if isinstance(exc.reason, TimeoutError) else JudgeFailure.CONNECTION
            raise _Retryable(code, f"{url}: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:  # reset or cut off mid-reply, no status line
            raise _Retryable(JudgeFailure.CONNECTION, f"{url}: {exc}") from None


def _verdict_of(body: bytes, kind: str, attempts: int) -> Verdict:
    try:
        reply = json.loads(body)["choices"][0]["message"]["content"]
        if not isinstance(reply, str):
            raise TypeError(f"content is {type(reply).__name__}")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return Verdict(None, JudgeFailure.MALFORMED, f"{type(exc).__name__}: {body[:200]!r}", attempts)
    value = parse_verdict(reply, kind)
    if value is None or not math.isfinite(value):
        return Verdict(None, JudgeFailure.NO_VERDICT, reply[:200], attempts)
    return Verdict(value, attempts=attempts, text=reply if kind == "text" else "")


class StaticJudge:
    """A judge that gives the same verdict to every question, without a server: for docs, the CPU demo
    (where no judge model runs) and tests. `calls` counts the questions it was asked."""

    def __init__(self, value: float | None = 1.0, reason: str = ""):
        self.value = value
        self.reason = reason or ("" if value is not None else JudgeFailure.TIMEOUT)
        self.calls = 0

    def ask(self, messages: list[dict], kind: str = "yes_no") -> Verdict:
        self.calls += 1
        return Verdict(self.value, "" if self.value is not None else self.reason)

    def ask_many(self, batch: list[list[dict]], kind: str = "yes_no") -> list[Verdict]:
        return [self.ask(m, kind) for m in batch]
