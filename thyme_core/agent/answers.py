"""Answer extraction and multiple-choice scoring: pure functions, table-tested (tests/unit/test_agent_answers.py).

extract_answer takes the last <answer> block (or what follows an unclosed <answer>), then unwraps the
decorations models put around it: `**...**`, `\\boxed{...}`, "The answer is ...", "Answer: ...".
match_choice maps a prediction to the option letter it plainly means (its docstring lists the rules in
order; tests/unit/test_answer_table.py holds 200+ full Thyme transcripts with the letter each means). Anything
else is no match, scored wrong. VLMEvalKit's own rule stage, for comparable numbers, is eval/vlmevalkit.py.
"""

from __future__ import annotations

import re

_ANSWER_OPEN = "<answer>"
_ANSWER_CLOSE = "</answer>"
_BOXED = re.compile(r"\\boxed\s*\{")
_LEAD_INS = re.compile(r"^(?:the\s+(?:final\s+|correct\s+)?answer\s+is\s*:?|final\s+answer\s*:|answer\s*:)\s*", re.I)
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


# A letter as a token: not inside a word ("Bus"), not "e.g.". Lower-case letters count only where nothing
# else could be meant: alone, in parentheses, or right after an answer cue and before punctuation.
_CUE = re.compile(r"\b(?:answer|option|choice)\b(?:\s+(?:is|would\s+be|should\s+be|must\s+be))?\s*[:=\-]?\s*"
                  r"(?:\*\*)?(\(([A-Za-z])\)|([A-Za-z])(?![\w'’]))(?:\*\*)?", re.I)
_UPPER = re.compile(r"(?<![\w'’])(?:\(([A-Z])\)|([A-Z]))(?![\w'’]|\.\w)")
_LOWER_PAREN = re.compile(r"(?<![\w(])\(([a-z])\)")
_LOWER_LEAD = re.compile(r"^([a-z])[.):](?:\s|$)")
_ALTERNATIVE = re.compile(r"^\s*(?:,|/|&|\bor\b|\band\b)\s*(?:\*\*)?\(?[A-Za-z]\)?(?![\w'])", re.I)
_NEGATED = re.compile(r"\b(?:not|isn't|is\s+not|rather\s+than|instead\s+of|than)\s*(?:option\s+)?$", re.I)


def _rest_starts_with(rest: str, option_text: str) -> bool:
    return bool(option_text) and _norm(rest).startswith(_norm(option_text)) and _norm(option_text) != ""


def _is_word_use(text: str, end: int, letter: str, options: dict[str, str]) -> bool:
    """True when an upper-case letter at text[end-1] is the article "A" or the pronoun "I" of a sentence (it
    runs on into a word), not an option: unless what follows is that option's own text ("A cat" for A: cat)."""
    rest = text[end:]
    if letter not in ("A", "I") or not re.match(r"\s+[A-Za-z]", rest):
        return False
    return not _rest_starts_with(rest, options.get(letter, ""))


def _letters_mentioned(text: str, options: dict[str, str]) -> list[str]:
    """Option letters the text names, in order of appearance, without articles, pronouns and negated ones."""
    found: list[tuple[int, str]] = []
    for m in _UPPER.finditer(text):
        letter = m.group(1) or m.group(2)
        if letter not in options or (m.group(2) and _is_word_use(text, m.end(), letter, options)):
            continue
        if _NEGATED.search(text[:m.start()]):
            continue
        found.append((m.start(), letter))
    found += [(m.start(), m.group(1).upper()) for m in _LOWER_PAREN.finditer(text) if m.group(1).upper() in options]
    lead = _LOWER_LEAD.match(text)
    if lead and lead.group(1).upper() in options:
        found.append((0, lead.group(1).upper()))
    return [letter for _, letter in sorted(found)]


def _cue_letter(text: str, options: dict[str, str]) -> str | None:
    """The letter after the last answer cue ("the answer is b", "Option (C)"); "" when the cue names two
    ("the answer is B or D"); None when there is no cue naming a letter."""
    for m in reversed(list(_CUE.finditer(text))):
        letter = m.group(2) or m.group(3)
        rest = text[m.end():]
        if m.group(3):  # not parenthesised: rule out a word ("the answer is a dog")
            if letter.islower() and re.match(r"\s*[A-Za-z0-9]", rest):
                continue
            if letter.isupper() and _is_word_use(text, m.end(), letter, options):
                continue
        if letter.upper() not in options:
            continue
        return "" if _ALTERNATIVE.match(rest) else letter.upper()
    return None


def _contained_option(norm: str, options: dict[str, str]) -> str | None:
    """The one option whose text the answer names, longest first: an occurrence inside a longer option's
    occurrence ("blue" in "light blue") does not count, nor one right after "not"."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for k, v in options.items():
        if _norm(v):
            pattern = rf"(?<!\w){re.escape(_norm(v))}(?!\w)"
            spans[k] = [m.span() for m in re.finditer(pattern, norm)
                        if not re.search(r"\bnot\s*$", norm[:m.start()])]
    standing = set()
    for k, found in spans.items():
        for a, b in found:
            inside = any(o != k and x <= a and b <= y and (y - x) > (b - a) for o in spans for x, y in spans[o])
            if not inside:
                standing.add(k)
    return standing.pop() if len(standing) == 1 else None


def _leading_letter(text: str, options: dict[str, str]) -> str | None:
    """"B. green", "(c) blue", "A) B cells": a leading letter with a delimiter, followed by its own option's
    text."""
    m = re.match(r"^(?:\(([A-Za-z])\)|([A-Za-z])[.):])\s+(.*)$", text, re.S)
    if not m:
        return None
    letter = (m.group(1) or m.group(2)).upper()
    return letter if letter in options and _rest_starts_with(m.group(3), options[letter]) else None


def match_choice(prediction: str, options: dict[str, str]) -> str | None:
    """The option letter a prediction plainly means, or None. The rules, in order:

    1. the answer is exactly one option's text (case and punctuation aside): that option, even when the
       text starts with another option's letter ("B cells" for A: B cells);
    2. a bare letter, any case: "B", "(b)", "c.";
    3. the last answer cue names a letter: "the answer is b", "Option (C)"; two letters there ("B or D") mean
       no single option;
    3b. a leading letter with a delimiter followed by its own option's text: "A) B cells";
    4. the option letters the text names: exactly one counts ("B. green", "I think B"); several ("B, C") mean
       no single option. The article "A" and the pronoun "I" are words, not letters, unless the option's own
       text follows; a negated letter ("not A") is not chosen;
    5. the one option whose text the answer names, longest first, a negated one ("not light blue") aside.

    >>> match_choice("(b)", {"A": "cat", "B": "dog"}), match_choice("It is a dog.", {"A": "cat", "B": "dog"})
    ('B', 'B')
    >>> match_choice("A dog", {"A": "cat", "B": "dog"}), match_choice("B or D", {k: "" for k in "ABCD"}) is None
    ('B', True)
    """
    text = clean_answer(prediction)
    if not text or not options:
        return None
    options = {k.upper(): v for k, v in options.items()}
    norm = _norm(text)
    exact = [k for k, v in options.items() if _norm(v) and _norm(v) == norm]
    if len(exact) == 1:
        return exact[0]
    bare = re.fullmatch(r"[(\[]?([A-Za-z])[)\]]?[.:]?", text)
    if bare:
        return bare.group(1).upper() if bare.group(1).upper() in options else None
    cue = _cue_letter(text, options)
    if cue is not None:
        return cue or None
    lead = _leading_letter(text, options)
    if lead:
        return lead
    mentioned = set(_letters_mentioned(text, options))
    if mentioned:
        return mentioned.pop() if len(mentioned) == 1 else None
    return _contained_option(norm, options)


def score_choice(prediction: str, options: dict[str, str], answer: str) -> bool:
    """True when the prediction means the correct option. `answer` is a letter or the option's text."""
    truth = answer.strip()
    if truth not in options:
        truth = match_choice(truth, options) or truth
    return match_choice(prediction, options) == truth
