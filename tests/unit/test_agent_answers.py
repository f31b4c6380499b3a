"""Answer extraction and multiple-choice scoring: tables of literal cases, each with why."""

import pytest

from thyme_core.agent.answers import clean_answer, extract_answer, match_choice, score_choice

OPTS = {"A": "red", "B": "green", "C": "blue", "D": "light blue"}


@pytest.mark.parametrize("response, expected", [
    ("<think>x</think><answer>B</answer>", "B"),  # plain
    ("<answer>**B**</answer>", "B"),  # bold, as the released model often writes
    ("<answer>**B. TAXI**</answer>", "B. TAXI"),  # bold around letter and text: text kept for matching
    ("<answer>\\boxed{42}</answer>", "42"),  # math style
    ("<answer>**\\boxed{C}**</answer>", "C"),  # nested decorations unwrap repeatedly
    ("<answer>\\boxed{\\frac{1}{2}}</answer>", "\\frac{1}{2}"),  # braces inside the box stay balanced
    ("<answer>The answer is B.</answer>", "B"),  # lead-in and trailing period of a bare letter
    ("<answer>$7$</answer>", "7"),  # inline math
    ("<answer>A</answer> then <answer>C</answer>", "C"),  # the last answer block counts
    ("<think>long</think><answer>  D\n", "D"),  # unclosed (stopped by EOS / budget): what follows counts
    ("<think>no answer tag, just B</think>", ""),  # no <answer>: nothing extracted, scored wrong
    ("<answer></answer>", ""),  # empty
])
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


@pytest.mark.parametrize("prediction, expected", [
    ("B", "B"),  # bare letter
    ("(C)", "C"),  # parenthesised
    ("C.", "C"),  # letter with period
    ("B. green", "B"),  # letter first, then option text
    ("A) red", "A"),  # letter with closing paren
    ("**D**", "D"),  # bold
    ("The answer is C", "C"),  # lead-in
    ("blue", "C"),  # exact option text
    ("Light Blue", "D"),  # option text, case-insensitive (not C: exact text wins over containment)
    ("It is green.", "B"),  # one option's text contained
    ("I think B is right", "B"),  # exactly one option letter mentioned ("I" is not an option)
    ("E", None),  # a letter that is not an option
    ("red or green", None),  # two options mentioned: ambiguous, no match
    ("", None),  # nothing
    ("purple", None),  # no option's text
])
def test_match_choice(prediction, expected):
    assert match_choice(prediction, OPTS) == expected


@pytest.mark.parametrize("prediction, answer, correct", [
    ("**B**", "B", True),  # letter vs letter
    ("green", "B", True),  # option text vs letter
    ("B", "green", True),  # a reference given as option text
    ("C", "B", False),  # wrong letter
    ("", "B", False),  # no answer is wrong
])
def test_score_choice(prediction, answer, correct):
    assert score_choice(prediction, OPTS, answer) is correct


def test_clean_answer_keeps_sentences_that_are_not_bare_letters():
    assert clean_answer("**A dog.**") == "A dog."  # a trailing period is only dropped from a bare letter
