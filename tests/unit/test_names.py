"""Names users choose and the Prefect artifact keys derived from them."""

from __future__ import annotations

import re

import pytest

from thyme_core.base.errors import ThymeError
from thyme_core.base.names import artifact_key, check_name

PREFECT_KEY = re.compile(r"^[a-z0-9-]+$")  # what Prefect's API accepts as an artifact key


@pytest.mark.parametrize("name, ok", [
    ("wo_thinking_thyme_single_round", True),  # the released split names
    ("2round", True),  # may start with a digit
    ("tworound.v2", True),  # dots are allowed in a name (the key is derived, not the name itself)
    ("a b", False),  # spaces break shell use and SQL by hand
    ("a/b", False),  # would be a path
    ("x@latest", False),  # '@' separates a tag in `thyme data pull NAME@TAG`
    ("-x", False),  # would read as an option
    ("", False),
    ("x" * 129, False),  # too long for a key with room for a hash
])
def test_check_name(name, ok):
    if ok:
        assert check_name("split", name) == name
    else:
        with pytest.raises(ThymeError, match="split"):
            check_name("split", name)


@pytest.mark.parametrize("parts", [
    ("prepare", "tworound.v2"),  # the case: a dot used to fail the run at its last step
    ("prepare", "Mixed_Case"),
    ("eval", "x" * 128),  # long
    ("prepare", "é"),  # nothing left of it but the hash
])
def test_artifact_key_is_always_valid(parts):
    key = artifact_key(*parts)
    assert PREFECT_KEY.match(key) and len(key) <= 110


def test_artifact_keys_of_different_names_differ():
    names = ["tworound.v2", "tworound-v2", "Tworound-v2", "tworound v2"]
    assert len({artifact_key("prepare", n) for n in names}) == len(names)
    assert artifact_key("prepare", "2round") == "prepare-2round"  # a plain name keeps a readable key
