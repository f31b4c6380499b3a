"""Answer extraction and multiple-choice scoring: pure functions, table-tested (tests/unit/test_agent_answers.py).

extract_answer takes the last <answer> block (or what follows an unclosed <answer>), then unwraps the
decorations models put around it: `**...**`, `\\boxed{...}`, "The answer is ...", "Answer: ...".
match_choice maps a prediction to an option letter the way VLMEvalKit's rule matcher does before it would
call a judge: a bare letter ("B", "(B)", "B.", "B) text"), the full option text, or exactly one option
letter / option text mentioned. Anything else is no match, scored wrong.
"""

from __future__ import annotations

import re

_ANSWER_OPEN = "<answer>"
_ANSWER_CLOSE = "</answer>"
_BOXED = re.compile(r"\\boxed\s*\{")
_LEAD_INS = re.compile(r"^(?:the\s+(?:final\s+|correct\s+)?answer\s+is\s*:?|final\s+answer\s*:|answer\s*:)\s*", re.I)
_LETTER_FIRST = re.compile(r"^\(?([A-Z])\s*(?:\)|\.|:|,|\s|$)")
_ONLY_LETTER = re.compile(r"^\(?([A-Z])\)?\.?$")


def extract_answer(response: str) -> str:
    """The answer text of a response ("" when it has none).

    >>> extract_answer("<think>...</think><answer>**B. TAXI**</answer>")
    'B. TAXI'
    >>> extract_answer("<answer>\\\\boxed{42}</answer>")
    '42'
    """
    start = response.rfind(_ANSWER_OPEN)
    if start == -1:
        return ""
    body = response[start + len(_ANSWER_OPEN):]
    end = body.find(_ANSWER_CLOSE)
    return clean_answer(body if end == -1 else body[:end])


def clean_answer(text: str) -> str:
    """Unwrap `**`, `\\boxed{}`, `$...$` and lead-ins, repeatedly (they nest: "**\\boxed{B}**")."""
    previous = None
    text = text.strip()
    while text != previous:
        previous = text
        text = _unbox(text).strip()
        if len(text) >= 4 and text.startswith("**") and text.endswith("**"):
            text = text[2:-2].strip()
        if len(text) >= 2 and text[0] == text[-1] == "$":
            text = text[1:-1].strip()
        text = _LEAD_INS.sub("", text).strip()
    return text.rstrip(".").strip() if _ONLY_LETTER.match(text) else text


def _unbox(text: str) -> str:
    """The content of the last \\boxed{...} (braces balanced), or the text unchanged."""
    matches = list(_BOXED.finditer(text))
    if not matches:
        return text
    i = matches[-1].end()
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return text[i:]


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def match_choice(prediction: str, options: dict[str, str]) -> str | None:
    """The option letter a prediction means, or None.

    >>> match_choice("(B)", {"A": "cat", "B": "dog"})
    'B'
    >>> match_choice("It is a dog.", {"A": "cat", "B": "dog"})
    'B'
    """
    text = clean_answer(prediction)
    if not text or not options:
        return None
    letters = set(options)
    m = _ONLY_LETTER.match(text) or _LETTER_FIRST.match(text)
    if m and m.group(1) in letters:
        return m.group(1)
    norm = _norm(text)
    exact = [k for k, v in options.items() if _norm(v) and _norm(v) == norm]
    if len(exact) == 1:
        return exact[0]
    mentioned = {c for c in re.findall(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])", text) if c in letters}
    if len(mentioned) == 1:
        return mentioned.pop()
    contained = [k for k, v in options.items() if _norm(v) and re.search(rf"\b{re.escape(_norm(v))}\b", norm)]
    if len(contained) == 1:
        return contained[0]
    return None


def score_choice(prediction: str, options: dict[str, str], answer: str) -> bool:
    """True when the prediction means the correct option. `answer` is a letter or the option's text."""
    truth = answer.strip()
    if truth not in options:
        truth = match_choice(truth, options) or truth
    return match_choice(prediction, options) == truth
