"""VLMEvalKit's scoring protocol, re-implemented, so a user can report numbers comparable with published ones.

`thyme eval --protocol vlmevalkit` scores each prediction (the extracted answer) the way VLMEvalKit's
rule stage does, and asks the judge only where those rules decide nothing:

- multiple choice (HRBench, V*, and any A-E TSV; VLMEvalKit's mcq_vanilla_eval): `can_infer` = the option
  letter when exactly one option letter stands as a token after replacing `.()[],:;!*#{}` by spaces (a
  refusal phrase means Z; a lone Z means Z), else the option whose text (lower-cased) the answer contains, when
  exactly one does and the answer is at most twice as long as all option texts together. Nothing inferred and
  a judge configured: the judge gets VLMEvalKit's matching prompt, up to 3 times, and its reply goes through
  `can_infer` again; still nothing: a pseudo-random option or Z (VLMEvalKit draws one at random; we seed the
  draw with the sample id so a rerun scores the same). No judge: "Z" (its exact_matching mode), scored wrong.
- MME-RealWorld (a `multi-choice options` column, or the benchmark's name): regex only,
  `extract_characters_regex`, never a judge. Its quirks are kept, as published: answer prefixes are removed
  case-sensitively (two entries of its list run together for want of a comma), and an empty prediction is read
  as option A ("" is `in` every "(X)").

Differences from our own `thyme` protocol (agent/answers.py): VLMEvalKit counts a lone capital "A" in a
sentence as option A when no other letter appears, reads no lower-case letters, and does not prefer an exact
option text over a letter. Circular evaluation (MMBench's) is not implemented.
"""

from __future__ import annotations

import random
import re

from thyme_core.rl.judge import Verdict

_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_SPLIT_CHARS = ".()[],:;!*#{}"
JUDGE_TRIES = 3


def can_infer_option(answer: str, choices: dict[str, str]) -> str | None:
    """The one option letter the answer holds as a token, "Z" for a refusal or a lone Z, else None.

    >>> can_infer_option("The answer is (B).", {"A": "", "B": ""}), can_infer_option("B or A", {"A": "", "B": ""})
    ('B', None)
    >>> can_infer_option("A dog is there", {"A": "", "B": ""})  # VLMEvalKit reads the article as option A
    'A'
    """
    if "Failed to obtain answer via API" in answer:
        return None
    if any(r in answer for r in _REFUSALS):
        return "Z"
    for c in _SPLIT_CHARS:
        answer = answer.replace(c, " ")
    tokens = answer.split()
    named = [c for c in choices if c in tokens]
    if len(named) == 1:
        return named[0]
    if not named and "Z" in tokens:
        return "Z"
    return None


def can_infer_text(answer: str, choices: dict[str, str]) -> str | None:
    """The one option whose lower-cased text the answer contains (answers over twice the options' length: none).

    >>> can_infer_text("it is a dog", {"A": "cat", "B": "dog"})
    'B'
    """
    answer = answer.lower()
    if len(answer) > 2 * sum(len(str(v)) for v in choices.values()):
        return None
    hits = [k for k, v in choices.items() if str(v).lower() in answer]
    return hits[0] if len(hits) == 1 else None


def can_infer(answer: str, choices: dict[str, str]) -> str | None:
    answer = str(answer)
    return can_infer_option(answer, choices) or can_infer_text(answer, choices)


# MME-RealWorld: the prefixes as its list holds them (two pairs lack a comma between them, so they are joined)
_MME_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                 "The best option isThe correct option is", "Best answer:Best option:")


def extract_characters_regex(s: str, choices=("(A)", "(B)", "(C)", "(D)", "(E)")) -> str:
    """MME-RealWorld's rule: a \\boxed{} content, else the first capital A-E after removing answer prefixes;
    a long answer without one is "" (scored 0).

    >>> extract_characters_regex("The answer is (C) because"), extract_characters_regex("\\\\boxed{D}")
    ('C', 'D')
    >>> extract_characters_regex("it is red and it is shiny and it is on the left of the"), extract_characters_regex("")
    ('', 'A')
    """
    s = (s if isinstance(s, str) else "").strip()
    boxed = re.search(r".*\\boxed\{([^}]*)\}", s)
    if boxed:
        return boxed.group(1)
    for prefix in _MME_PREFIXES:
        s = s.replace(prefix, "")
    if len(s.split()) > 10 and not re.search("[ABCDE]", s):
        return ""
    m = re.search(r"[ABCDE]", s)
    if m is None:
        for choice in choices:
            if s.lower() in choice.lower():
                return choice[1]
        return ""
    return m.group(0)


def judge_messages(question: str, options: dict[str, str], prediction: str) -> list[dict]:
    """VLMEvalKit's matching prompt (build_prompt), as one user message."""
    option_str = "\n".join(f"{k}. {v}" for k, v in options.items())
    text = (
        "You are an AI assistant who will help me to match an answer with several options of a single-choice "
        "question. You are provided with a question, several options, and an answer, and you need to find which "
        "option is most similar to the answer. If the meaning of all options are significantly different from the "
        "answer, output Z. Your should output a single uppercase character in A, B, C, D (if they are valid "
        "options), and Z. \n"
        "Example 1: \nQuestion: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
        "Answer: a cute teddy bear\nYour output: A\n"
        "Example 2: \nQuestion: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
        "Answer: Spider\nYour output: Z\n"
        f"Example 3: \nQuestion: {question}?\nOptions: {option_str}\nAnswer: {prediction}\nYour output: "
    )
    return [{"role": "user", "content": text}]


def is_mme_realworld(benchmark: str, has_choice_prompt: bool) -> bool:
    return has_choice_prompt or "mme-realworld" in benchmark.lower().replace("_", "-")


def choose(prediction: str, question: str, options: dict[str, str], *, regex_only: bool, judge=None,
           seed: str = "") -> tuple[str, str]:
    """(letter, how) for one prediction under VLMEvalKit's protocol; how is "rule", "judge", "judge_failed",
    "no_judge" or "regex". The letter is "" or "Z" when nothing matched (scored wrong)."""
    if regex_only:
        return extract_characters_regex(prediction), "regex"
    letter = can_infer(prediction, options)
    if letter:
        return letter, "rule"
    if judge is None:
        return "Z", "no_judge"
    messages = judge_messages(question, options, prediction)
    for _ in range(JUDGE_TRIES):
        verdict: Verdict = judge.ask(messages, kind="text")
        if verdict.ok:
            letter = can_infer(verdict.text, options)
            if letter:
                return letter, "judge"
    return random.Random(seed).choice([*options, "Z"]), "judge_failed"
