"""Names users choose (splits, dataset names, tags) and the Prefect keys derived from them.

A name is checked up front (`check_name`: letters, digits, '.', '_', '-', starting with a letter or digit,
at most 128 characters), so a bad one fails a run before it writes anything rather than at its last step.
A name in that alphabet can still not be a Prefect artifact key, which allows only lowercase letters,
digits and '-': `artifact_key` derives one from any text (lowercased, every other run of characters
replaced by '-'), and appends a short hash of the original text when that lost more than '_' -> '-', so
`tworound.v2`, `Tworound-v2` and `tworound-v2` never share a key (`a_b` and `a-b` do).
"""

from __future__ import annotations

import hashlib
import re

from thyme_core.base.errors import ThymeError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_NOT_KEY = re.compile(r"[^a-z0-9]+")
KEY_MAX = 100  # well under Prefect's limit, with room for the hash


def check_name(what: str, value: str) -> str:
    """value, or ThymeError naming what is wrong with it."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ThymeError(f"{what} {value!r}: use letters, digits, '.', '_' or '-' (starting with a letter or digit, "
                         "at most 128 characters; no '/', '@' or spaces)")
    return value


def artifact_key(*parts: str) -> str:
    """A valid Prefect artifact key for these parts (see the module docstring for when two share one).

    >>> artifact_key("prepare", "wo_thinking_thyme_single_round")
    'prepare-wo-thinking-thyme-single-round'
    >>> artifact_key("prepare", "tworound.v2")
    'prepare-tworound-v2-79bd95'
    """
    text = "-".join(parts)
    key = _NOT_KEY.sub("-", text.lower()).strip("-")[:KEY_MAX].strip("-") or "x"
    if key != text.replace("_", "-"):
        key += "-" + hashlib.sha256(text.encode()).hexdigest()[:6]
    return key
