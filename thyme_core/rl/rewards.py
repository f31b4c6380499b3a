"""GRPO-ATS rewards: plain functions `completions, **kwargs -> list[float | None]` (TRL's shape), by name in
`REWARDS`, table-tested in tests/unit/test_rl_rewards.py.

- format: exactly one <think>...</think>, then exactly one non-empty <answer>...</answer>, then only
  whitespace. Code blocks and sandbox outputs live inside the think block; the text of sandbox outputs is
  ignored (a program may print anything, the model did not write it).
- accuracy: rules first (agent/answers.py does the extraction): multiple choice by letter or option text,
  numbers and simple math expressions (fractions, \\frac, percentages, thousands separators, units and
  currency stripped), then equal normalised text. When the rules cannot decide (different open-ended text,
  or a number against words), the judge decides if one is given; without a judge the rule's 0 stands.
- consistency: the judge says whether the end of the reasoning supports the answer (no judge: an error).
- combined: r = w_acc * acc * (1 + w_cons * cons) + w_fmt * fmt, cons only asked and counted when acc > 0.
- combined_negated: -combined, for control runs that must unlearn (bench/learn_cpu.py).

Each returned list also carries its components in `parts` (format / accuracy / consistency, one dict per
completion, only the components the function computed): format_reward gives {"format"}, combined gives all three
(consistency None where it was not asked: acc == 0, or w_cons == 0). combined_negated's parts are the
un-negated components: what the completion scored, while its total is the control's -combined. The RL store
keeps them per rollout (catalog rl_rollouts.reward_format / reward_accuracy / reward_consistency).

A judge failure is a missing reward: None, with its reason code (judge.JudgeFailure) in the returned list's
`reasons`. It is never scored 0. What the trainer does with a group holding a missing reward is in
grpo.group_advantages (the whole group is dropped from the loss and counted by reason).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass

from thyme_core.agent.answers import clean_answer, extract_answer, match_choice, score_choice
from thyme_core.base.errors import ThymeError
from thyme_core.rl.judge import Verdict, accuracy_messages, consistency_messages
from thyme_core.base.presets import setting as _f


PARTS = ("format", "accuracy", "consistency")  # the components a reward function may report in Scores.parts


class Scores(list):
    """Rewards, one per completion (a float, or None when missing), with `reasons` alongside: "" where the
    reward is present, the reason code where it is missing; and `parts`: per completion, a dict of the
    components (PARTS) this reward computed, a component missing from the dict was not computed. A plain list
    to anything that wants one."""

    def __init__(self, values, reasons=None, parts=None):
        super().__init__(values)
        self.reasons = list(reasons) if reasons is not None else [""] * len(self)
        self.parts = [dict(p) for p in parts] if parts is not None else [{} for _ in self]


@dataclass(frozen=True)
class RewardConfig:
    accuracy_weight: float = _f(1.0, "w_acc in r = w_acc * acc * (1 + w_cons * cons) + w_fmt * fmt")
    consistency_weight: float = _f(0.5, "w_cons; 0 trains without consistency (and without asking the judge)")
    format_weight: float = _f(0.5, "w_fmt")
    reasoning_tail_chars: int = _f(1500, "characters of the end of the think block the consistency judge reads")
    rel_tol: float = _f(1e-4, "relative tolerance of numeric answers (absolute 1e-9 near zero)")

    def __post_init__(self):
        weights = (self.accuracy_weight, self.consistency_weight, self.format_weight)
        if not all(math.isfinite(w) and w >= 0 for w in weights) or not any(weights):
            raise ThymeError(f"reward weights must be finite, >= 0 and not all 0, not {weights}")
        if self.reasoning_tail_chars < 1 or not 0 <= self.rel_tol < 1:
            raise ThymeError("reasoning_tail_chars >= 1 and 0 <= rel_tol < 1 are required")


def _text(completion) -> str:
    """A completion as text: a string, or TRL's conversational form (a list of messages; the last one's)."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


# ---------------------------------------------------------------- format

_SANDBOX = re.compile(r"<sandbox_output>.*?</sandbox_output>", re.S)
_LAYOUT = re.compile(r"\s*<think>(.*)</think>\s*<answer>(.*)</answer>\s*", re.S)
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def format_ok(text: str) -> bool:
    text = _SANDBOX.sub("<sandbox_output></sandbox_output>", text)
    m = _LAYOUT.fullmatch(text)
    return bool(m) and all(text.count(t) == 1 for t in _TAGS) and bool(m.group(2).strip())


def format_reward(completions, **kwargs) -> Scores:
    """1.0 when the layout is <think>...</think><answer>...</answer> and nothing after, else 0.0.

    >>> format_reward(["<think>crop it</think><answer>B</answer>", "<answer>B</answer>"])
    [1.0, 0.0]
    """
    values = [1.0 if format_ok(_text(c)) else 0.0 for c in completions]
    return Scores(values, parts=[{"format": v} for v in values])


# ---------------------------------------------------------------- accuracy rules

_OPTION_LINE = re.compile(r"^\s*\(?([A-H])[.):]\s+(.+?)\s*$", re.M)
_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?![\d,])")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_NUM_ANSWER = re.compile(r"^(?:[a-z]\s*=\s*|\\approx\s*|≈\s*)?[$€£¥]?\s*([-+*/^().\d\s]+?)\s*"
                         r"(%|\\%|percent)?\s*(?:[a-zµ°²³][\w°²³^/.\-]*(?:\s+[a-z][\w°²³^/.\-]*){0,2})?\.?$", re.I)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}


def options_in(question: str) -> dict[str, str]:
    """Option lines ("A. cat", "(B) dog", "C: cow") of a question, when it has at least two.

    >>> options_in("What is it?\\nOptions:\\nA. cat\\nB. dog")
    {'A': 'cat', 'B': 'dog'}
    """
    found = dict(_OPTION_LINE.findall(question or ""))
    return found if len(found) >= 2 else {}


def parse_number(text: str) -> tuple[float, bool] | None:
    """(value, is_percent) of a numeric answer, or None when it is not one.

    >>> parse_number("$1,234.5"), parse_number("\\\\frac{3}{4} cm"), parse_number("12.5%"), parse_number("x = 2^3")
    ((1234.5, False), (0.75, False), (12.5, True), (8.0, False))
    >>> parse_number("3 apples and 4 pears") is None, parse_number("B") is None
    (True, True)
    """
    text = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), text.strip())
    text = _FRAC.sub(r"((\1)/(\2))", text).replace("\\times", "*").replace("\\cdot", "*").replace("\\div", "/")
    m = _NUM_ANSWER.match(text)
    if not m or not re.search(r"\d", m.group(1)):
        return None
    value = _evaluate(m.group(1).replace("^", "**"))
    return None if value is None else (value, bool(m.group(2)))


def _evaluate(expr: str) -> float | None:
    """The value of an arithmetic expression of numbers (+ - * / ** and parentheses), or None."""
    try:
        return _eval_node(ast.parse(expr.strip(), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None


def _eval_node(node) -> float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval_node(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval_node(node.left), _eval_node(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return float(_OPS[type(node.op)](left, right))
    raise ValueError(f"not arithmetic: {type(node).__name__}")


def _numbers_equal(a: tuple[float, bool], b: tuple[float, bool], rel_tol: float) -> bool:
    """Equal values, where a percentage also matches its fraction (50% ~ 0.5) and its bare number (50)."""
    def forms(x):
        return {x[0], x[0] / 100} if x[1] else {x[0]}
    return any(math.isclose(u, v, rel_tol=rel_tol, abs_tol=1e-9) for u in forms(a) for v in forms(b))


def _norm_text(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def solution_text(solution: str) -> str:
    """The reference answer: the <answer> block when the solution has one, cleaned the same way."""
    return extract_answer(solution) if "<answer>" in solution else clean_answer(solution)


def rule_accuracy(answer: str, solution: str, options: dict[str, str] | None = None,
                  rel_tol: float = 1e-4) -> float | None:
    """1.0 / 0.0 when the rules decide, None when they cannot (open-ended text, numbers against words).

    >>> rule_accuracy("B", "b. dog", {"A": "cat", "B": "dog"}), rule_accuracy("1/2", "50%")
    (1.0, 1.0)
    >>> rule_accuracy("", "7"), rule_accuracy("a red car", "a blue car") is None
    (0.0, True)
    """
    gold = solution_text(solution)
    if not answer:
        return 0.0
    if options:
        return 1.0 if score_choice(answer, options, gold) else 0.0
    if re.fullmatch(r"\(?[A-H]\)?\.?", gold):  # a letter without the options: letters only
        letters = {chr(c): "" for c in range(ord("A"), max(ord(gold.strip("(). ")), ord("D")) + 1)}
        picked = match_choice(answer, letters)
        if picked is not None:
            return 1.0 if picked == gold.strip("(). ") else 0.0
    g, a = parse_number(gold), parse_number(answer)
    if g is not None and a is not None:
        return 1.0 if _numbers_equal(a, g, rel_tol) else 0.0
    if _norm_text(answer) == _norm_text(gold):
        return 1.0
    return None


def _column(kwargs, name: str, n: int) -> list:
    values = kwargs.get(name)
    return [None] * n if values is None else list(values)


def accuracy_reward(completions, solution, judge=None, config: RewardConfig | None = None, **kwargs) -> Scores:
    """Rules first; what they cannot decide goes to `judge` (batched), else scores 0.
    Optional columns: `question` (for the judge, and its option lines), `options` (dicts letter -> text).

    >>> accuracy_reward(["<answer>**\\\\boxed{1,000}**</answer>", "<answer>(C)</answer>"], solution=["1000", "B"])
    [1.0, 0.0]
    """
    config = config or RewardConfig()
    n = len(completions)
    questions, options = _column(kwargs, "question", n), _column(kwargs, "options", n)
    values: list[float | None] = []
    answers = [extract_answer(_text(c)) for c in completions]
    for answer, sol, q, opts in zip(answers, solution, questions, options):
        values.append(rule_accuracy(answer, sol, opts or options_in(q or ""), config.rel_tol))
    open_ended = [i for i, v in enumerate(values) if v is None]
    reasons = [""] * n
    if judge is None:
        values = [0.0 if v is None else v for v in values]
    else:
        asked = [accuracy_messages(questions[i] or "", solution_text(solution[i]), answers[i]) for i in open_ended]
        for i, verdict in zip(open_ended, judge.ask_many(asked)):
            values[i], reasons[i] = _take(verdict)
    return Scores(values, reasons, [{"accuracy": v} for v in values])


def _take(verdict: Verdict) -> tuple[float | None, str]:
    return (verdict.value, "") if verdict.ok else (None, verdict.reason)


# ---------------------------------------------------------------- consistency

def reasoning_tail(text: str, chars: int = 1500) -> str:
    """The last `chars` characters of the think block ("" when there is none)."""
    start, end = text.find("<think>"), text.rfind("</think>")
    if start == -1 or end < start:
        return ""
    return text[start + len("<think>"):end].strip()[-chars:]


def consistency_reward(completions, judge=None, config: RewardConfig | None = None, **kwargs) -> Scores:
    """1.0 when the judge says the end of the reasoning supports the answer; 0.0 without reasoning or answer.

    >>> from thyme_core.rl.judge import StaticJudge
    >>> consistency_reward(["<think>2+2=4</think><answer>4</answer>", "<answer>4</answer>"], judge=StaticJudge(1.0))
    [1.0, 0.0]
    """
    if judge is None:
        raise ThymeError("the consistency reward needs a judge (or consistency_weight=0 in the combined reward)")
    config = config or RewardConfig()
    texts = [_text(c) for c in completions]
    questions = _column(kwargs, "question", len(texts))
    values: list[float | None] = [0.0] * len(texts)
    reasons = [""] * len(texts)
    asked, where = [], []
    for i, text in enumerate(texts):
        tail, answer = reasoning_tail(text, config.reasoning_tail_chars), extract_answer(text)
        if tail and answer:
            asked.append(consistency_messages(questions[i] or "", tail, answer))
            where.append(i)
    for i, verdict in zip(where, judge.ask_many(asked)):
        values[i], reasons[i] = _take(verdict)
    return Scores(values, reasons, [{"consistency": v} for v in values])


# ---------------------------------------------------------------- combined

@dataclass(frozen=True)
class RewardBreakdown:
    """One completion's rewards, as they land in the trajectory store."""

    format: float
    accuracy: float | None
    consistency: float | None  # None also when it was not asked (acc == 0 or w_cons == 0): see `reason`
    total: float | None
    reason: str = ""  # the missing component's reason code when total is None


def score_completions(completions, solution, judge=None, config: RewardConfig | None = None,
                      **kwargs) -> list[RewardBreakdown]:
    """Every reward of every completion; consistency is asked only where accuracy > 0."""
    config = config or RewardConfig()
    if config.consistency_weight > 0 and judge is None:
        raise ThymeError("consistency_weight > 0 needs a judge: configure one or set consistency_weight=0")
    fmt = format_reward(completions)
    acc = accuracy_reward(completions, solution, judge=judge, config=config, **kwargs)
    cons: list[float | None] = [None] * len(fmt)
    cons_reasons = [""] * len(fmt)
    if config.consistency_weight > 0:
        where = [i for i, a in enumerate(acc) if a is not None and a > 0]
        sub = {k: [v[i] for i in where] for k, v in kwargs.items() if isinstance(v, (list, tuple))}
        got = consistency_reward([completions[i] for i in where], judge=judge, config=config, **sub)
        for i, value, reason in zip(where, got, got.reasons):
            cons[i], cons_reasons[i] = value, reason
    out = []
    for i, (f, a, c) in enumerate(zip(fmt, acc, cons)):
        reason = acc.reasons[i] or cons_reasons[i]
        total = None if reason else combine(f, a, c, config)
        out.append(RewardBreakdown(f, a, c, total, reason))
    return out


def combine(fmt: float, acc: float, cons: float | None, config: RewardConfig) -> float:
    """r = w_acc * acc * (1 + w_cons * cons) + w_fmt * fmt; cons counts only when acc > 0.

    >>> combine(1.0, 1.0, 1.0, RewardConfig()), combine(1.0, 0.0, 1.0, RewardConfig())
    (2.0, 0.5)
    """
    bonus = config.consistency_weight * (cons or 0.0) if acc > 0 else 0.0
    return config.accuracy_weight * acc * (1 + bonus) + config.format_weight * fmt


def combined_reward(completions, solution, judge=None, config: RewardConfig | None = None, **kwargs) -> Scores:
    """The GRPO-ATS reward; None (with the reason) when a judged component is missing.

    >>> combined_reward(["<think>3*4=12</think><answer>12</answer>", "<think>hm</think><answer>13</answer>"],
    ...                 solution=["12", "12"], config=RewardConfig(consistency_weight=0))
    [1.5, 0.5]
    """
    rows = score_completions(completions, solution, judge=judge, config=config, **kwargs)
    return Scores([r.total for r in rows], [r.reason for r in rows],
                  [{"format": r.format, "accuracy": r.accuracy, "consistency": r.consistency} for r in rows])


def combined_negated_reward(completions, solution, judge=None, config: RewardConfig | None = None,
                            **kwargs) -> Scores:
    """Minus the combined reward: the control run of bench/learn_cpu.py. Group-normalised advantages of -r are
    exactly minus those of r, so training on it must lower the combined reward; a measurement that cannot
    show that cannot tell learning from noise either. Its `parts` are combined's, not negated: the control's
    rollouts record what they scored on each component.

    >>> combined_negated_reward(["<think>3*4=12</think><answer>12</answer>", "<answer>12</answer>"],
    ...                         solution=["12", "12"], config=RewardConfig(consistency_weight=0))
    [-1.5, -1.0]
    """
    got = combined_reward(completions, solution, judge=judge, config=config, **kwargs)
    return Scores([None if v is None else -v for v in got], got.reasons, got.parts)


REWARDS = {
    "format": format_reward,
    "accuracy": accuracy_reward,
    "consistency": consistency_reward,
    "combined": combined_reward,
    "combined_negated": combined_negated_reward,
}


def get_reward(name: str):
    """A reward function by name; an unknown name is a ThymeError listing the known ones."""
    if name not in REWARDS:
        raise ThymeError(f"unknown reward {name!r}; known: {', '.join(sorted(REWARDS))}")
    return REWARDS[name]
