"""GRPO-ATS rewards: tables of literal cases, each with why; the judge is a hand-written fake here (the real
client against a real HTTP stand-in is tests/integration/test_rl_judge.py)."""

import doctest

import pytest

from thyme_core.base.errors import ThymeError
from thyme_core.rl import judge as judge_module
from thyme_core.rl import rewards
from thyme_core.rl.judge import StaticJudge, Verdict, parse_verdict
from thyme_core.rl.rewards import (REWARDS, RewardConfig, accuracy_reward, combine, combined_reward,
                                   consistency_reward, format_reward, get_reward, options_in, parse_number,
                                   rule_accuracy, score_completions)

CODE = "<code>\n```python\nprint(1 + 1)\n```\n</code>"


@pytest.mark.parametrize("completion, expected", [
    ("<think>look</think><answer>B</answer>", 1.0),  # the canonical layout
    ("  <think>look</think>\n\n<answer>B</answer>\n  ", 1.0),  # whitespace around the blocks is fine
    (f"<think>compute {CODE}<sandbox_output>2</sandbox_output> so 2</think><answer>2</answer>", 1.0),  # code inside think
    ("<think>x<sandbox_output>printed </think> and <answer>y</answer></sandbox_output>z</think><answer>2</answer>",
     1.0),  # tags printed by the sandbox are not the model's
    ("<think></think><answer>B</answer>", 1.0),  # an empty think block is still the layout
    ("<answer>B</answer>", 0.0),  # no think block
    ("<think>look</think>", 0.0),  # no answer block
    ("<think>look</think><answer>B</answer> because", 0.0),  # text after </answer>
    ("Sure! <think>look</think><answer>B</answer>", 0.0),  # text before <think>
    ("<think>look</think> so <answer>B</answer>", 0.0),  # text between the blocks
    ("<think>a</think><think>b</think><answer>B</answer>", 0.0),  # two think blocks
    ("<think>a</think><answer>A</answer><answer>B</answer>", 0.0),  # two answer blocks
    ("<think>a <answer>A</answer></think><answer>B</answer>", 0.0),  # an answer inside the think block
    ("<think>a</think><answer>  </answer>", 0.0),  # an empty answer
    ("<think>a</think><answer>B", 0.0),  # unclosed answer (stopped by the token budget)
    (f"<think>a</think>{CODE}<answer>B</answer>", 0.0),  # code outside the think block
    ([{"role": "assistant", "content": "<think>a</think><answer>B</answer>"}], 1.0),  # TRL conversational form
])
def test_format_reward(completion, expected):
    assert format_reward([completion]) == [expected]


@pytest.mark.parametrize("text, expected", [
    ("42", (42.0, False)),  # plain integer
    ("-3.5", (-3.5, False)),  # negative decimal
    ("1,234,567", (1234567.0, False)),  # thousands separators
    ("$1,234.50", (1234.5, False)),  # currency and separators
    ("3/4", (0.75, False)),  # a fraction
    ("\\frac{1}{8}", (0.125, False)),  # LaTeX fraction
    ("\\dfrac{6}{4}", (1.5, False)),  # \dfrac too
    ("50%", (50.0, True)),  # percentage keeps its flag
    ("12.5 \\%", (12.5, True)),  # LaTeX percent
    ("7 cm", (7.0, False)),  # a unit is stripped
    ("30°", (30.0, False)),  # degrees
    ("9.8 m/s^2", (9.8, False)),  # a compound unit
    ("x = 2^3", (8.0, False)),  # a variable lead-in and a power
    ("2 \\times 3", (6.0, False)),  # LaTeX times
    ("(1+2)*3", (9.0, False)),  # parentheses
    ("1,5", None),  # a European decimal comma is ambiguous: not a number
    ("3 apples and 4 pears", None),  # two numbers in prose
    ("1/0", None),  # division by zero
    ("10^1000", None),  # a huge power is refused, not computed
    ("__import__('os')", None),  # only arithmetic is evaluated
    ("B", None),  # a letter
    ("", None),  # nothing
])
def test_parse_number(text, expected):
    assert parse_number(text) == expected


@pytest.mark.parametrize("answer, solution, options, expected", [
    ("B", "B", None, 1.0),  # same letter
    ("(B)", "<answer>B</answer>", None, 1.0),  # the solution in the released <answer> form
    ("B. dog", "B", None, 1.0),  # letter then text
    ("C", "B", None, 0.0),  # wrong letter
    ("dog", "B", {"A": "cat", "B": "dog"}, 1.0),  # option text against the letter
    ("cat", "dog", {"A": "cat", "B": "dog"}, 0.0),  # option text against option text, wrong
    ("The answer is A", "A", None, 1.0),  # lead-in
    ("1000", "1,000", None, 1.0),  # thousands separator in the solution
    ("0.5", "1/2", None, 1.0),  # decimal against fraction
    ("50%", "0.5", None, 1.0),  # a percentage matches its fraction
    ("50%", "50", None, 1.0),  # and its bare number
    ("12 cm", "12", None, 1.0),  # unit stripped
    ("$3.00", "3", None, 1.0),  # currency stripped
    ("3.00001", "3", None, 1.0),  # within the relative tolerance
    ("3.1", "3", None, 0.0),  # outside it
    ("\\frac{2}{3}", "0.666667", None, 1.0),  # LaTeX fraction against a rounded decimal
    ("13", "12", None, 0.0),  # a wrong number
    ("", "12", None, 0.0),  # no answer at all is wrong, no judge needed
    ("Paris", "paris.", None, 1.0),  # equal text after normalisation
    ("The Eiffel Tower", "Eiffel tower", None, None),  # different text: the rules cannot decide
    ("twelve", "12", None, None),  # words against a number: undecided
])
def test_rule_accuracy(answer, solution, options, expected):
    assert rule_accuracy(answer, solution, options) == expected


def test_options_come_from_the_question_when_not_given():
    question = "Which animal?\nOptions:\nA. cat\nB. dog\nC. cow"
    assert options_in(question) == {"A": "cat", "B": "dog", "C": "cow"}
    assert accuracy_reward(["<answer>dog</answer>"], solution=["B"], question=[question]) == [1.0]
    assert options_in("A. only one line") == {}  # one line is not a list of options


class RecordingJudge(StaticJudge):
    """Says `value` to everything and keeps the questions, to check what was (not) asked."""

    def __init__(self, value=1.0, reason=""):
        super().__init__(value, reason)
        self.asked = []

    def ask(self, messages, kind="yes_no"):
        self.asked.append(messages[-1]["content"])
        return super().ask(messages, kind)


def test_accuracy_asks_the_judge_only_what_rules_cannot_decide():
    judge = RecordingJudge(1.0)
    got = accuracy_reward(["<answer>12</answer>", "<answer>the tower</answer>", "<answer>13</answer>"],
                          solution=["12", "Eiffel Tower", "12"], question=["q1", "q2", "q3"], judge=judge)
    assert got == [1.0, 1.0, 0.0] and got.reasons == ["", "", ""]
    assert len(judge.asked) == 1 and "Eiffel Tower" in judge.asked[0] and "the tower" in judge.asked[0]


def test_accuracy_without_judge_scores_undecided_text_zero():
    got = accuracy_reward(["<answer>the tower</answer>"], solution=["Eiffel Tower"])
    assert got == [0.0] and got.reasons == [""]  # a rule's 0 (no judge configured), not a failure


def test_judge_failure_is_missing_with_its_reason_not_zero():
    got = accuracy_reward(["<answer>the tower</answer>", "<answer>7</answer>"], solution=["Eiffel Tower", "7"],
                          judge=StaticJudge(None, "judge_http_error"))
    assert got == [None, 1.0] and got.reasons == ["judge_http_error", ""]


def test_consistency_needs_reasoning_and_answer_and_a_judge():
    judge = RecordingJudge(0.0)
    long_think = "x" * 5000 + " so the answer is 4"
    got = consistency_reward([f"<think>{long_think}</think><answer>4</answer>", "<answer>4</answer>",
                              "<think>hm</think>"], judge=judge, config=RewardConfig(reasoning_tail_chars=100))
    assert got == [0.0, 0.0, 0.0] and len(judge.asked) == 1  # only the first has both parts
    assert "so the answer is 4" in judge.asked[0] and "x" * 101 not in judge.asked[0]  # only the tail is sent
    with pytest.raises(ThymeError, match="needs a judge"):
        consistency_reward(["<think>a</think><answer>4</answer>"])


@pytest.mark.parametrize("fmt, acc, cons, expected", [
    (1.0, 1.0, 1.0, 2.0),  # everything right: 1 * (1 + 0.5) + 0.5
    (1.0, 1.0, 0.0, 1.5),  # right but unsupported by the reasoning: no bonus
    (0.0, 1.0, 1.0, 1.5),  # right and supported, bad layout
    (1.0, 0.0, 1.0, 0.5),  # wrong: consistency does not count, only the format
    (0.0, 0.0, None, 0.0),  # nothing right
    (1.0, 0.5, 1.0, 1.25),  # a judge score in between: 0.5 * 1.5 + 0.5
])
def test_combine(fmt, acc, cons, expected):
    assert combine(fmt, acc, cons, RewardConfig()) == pytest.approx(expected)


def test_combined_reward_asks_consistency_only_when_accuracy_is_positive():
    judge = RecordingJudge(1.0)
    rows = score_completions(["<think>3*4=12</think><answer>12</answer>", "<think>3*4=13</think><answer>13</answer>",
                              "<answer>12</answer>"], solution=["12"] * 3, question=["3*4?"] * 3, judge=judge)
    assert [r.total for r in rows] == [2.0, 0.5, 1.0]  # right+format+supported; wrong+format; right, no think
    assert [r.consistency for r in rows] == [1.0, None, 0.0]  # not asked for the wrong one
    assert len(judge.asked) == 1  # the third has no reasoning to ask about


def test_combined_reward_is_missing_when_consistency_judge_fails():
    got = combined_reward(["<think>3*4=12</think><answer>12</answer>", "<think>x</think><answer>13</answer>"],
                          solution=["12", "12"], judge=StaticJudge(None, "judge_timeout"))
    assert got == [None, 0.5]  # the wrong one never needed the judge
    assert got.reasons == ["judge_timeout", ""]


def test_combined_reward_with_consistency_needs_a_judge_at_start():
    with pytest.raises(ThymeError, match="consistency_weight"):
        combined_reward(["<think>a</think><answer>1</answer>"], solution=["1"])
    weights = RewardConfig(accuracy_weight=2.0, consistency_weight=0.0, format_weight=0.25)
    assert combined_reward(["<think>a</think><answer>1</answer>"], solution=["1"], config=weights) == [2.25]


@pytest.mark.parametrize("kwargs", [
    {"accuracy_weight": -1.0},  # negative weight
    {"format_weight": float("nan")},  # not finite
    {"accuracy_weight": 0.0, "consistency_weight": 0.0, "format_weight": 0.0},  # all zero: no signal
    {"reasoning_tail_chars": 0},  # nothing to judge
])
def test_reward_config_rejects(kwargs):
    with pytest.raises(ThymeError):
        RewardConfig(**kwargs)


@pytest.mark.parametrize("reply, kind, expected", [
    ("yes", "yes_no", 1.0),  # plain
    ("No.", "yes_no", 0.0),  # capitalised, full stop
    ("**Yes**", "yes_no", 1.0),  # bold
    ("<think>compare them</think>\nno", "yes_no", 0.0),  # a reasoning judge's think block is skipped
    ("Yes, they match", "yes_no", None),  # not a bare verdict: strict
    ("yes no", "yes_no", None),  # both
    ("", "yes_no", None),  # empty
    ("0.8", "score", 0.8),  # a score
    ("Score: 1", "score", 1.0),  # a labelled score
    ("1.2", "score", None),  # out of range
    ("about 0.5", "score", None),  # not bare
])
def test_parse_verdict(reply, kind, expected):
    assert parse_verdict(reply, kind) == expected


def test_registry_and_doctests():
    assert set(REWARDS) == {"format", "accuracy", "consistency", "combined", "combined_negated", "format_negated"}
    assert get_reward("format") is format_reward
    with pytest.raises(ThymeError, match="known: accuracy"):
        get_reward("length")
    for module in (rewards, judge_module):
        assert doctest.testmod(module).failed == 0
    assert Verdict(None, "judge_timeout").ok is False


def test_the_negated_control_flips_every_advantage():
    """The control run of bench/learn_cpu.py: the same completions, advantages of the opposite sign, a missing
    reward still missing (so the same groups drop)."""
    from thyme_core.rl.grpo import group_advantages

    completions = ["<think>a</think><answer>12</answer>", "<think>b</think><answer>13</answer>", "<answer>12</answer>",
                   "<think>c</think><answer>B</answer>", "<think>d</think><answer>12</answer>", "no layout"]
    kw = dict(solution=["12"] * 6, config=RewardConfig(consistency_weight=0))
    for name, reward in (("combined_negated", combined_reward), ("format_negated", format_reward)):
        plain, negated = reward(completions, **kw), get_reward(name)(completions, **kw)
        assert negated == [-r for r in plain] and len(set(plain)) > 1
        a, b = group_advantages(plain, 3), group_advantages(negated, 3)
        assert (b.advantages == -a.advantages).all() and a.advantages.abs().sum() > 0
