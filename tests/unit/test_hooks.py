"""THYME_HOOKS (thyme_core.base.hooks): unset means no hooks; set, each named attribute is found; a wrong name
is a clear error, not an ignored switch."""

import importlib

import pytest

from thyme_core.base import hooks
from thyme_core.base.errors import ThymeError

SEEN = []


class Recorder:
    @staticmethod
    def after_step(step):
        SEEN.append(step)


def test_unset_means_no_hooks(monkeypatch):
    monkeypatch.delenv("THYME_HOOKS", raising=False)
    assert hooks.hook("steer") is None
    hooks.after_step(3)  # nothing to call


def test_after_step_reaches_the_named_object(monkeypatch):
    monkeypatch.setenv("THYME_HOOKS", "tests.unit.test_hooks:Recorder")
    hooks.after_step(1)
    hooks.after_step(2)
    named = importlib.import_module("tests.unit.test_hooks")  # the copy THYME_HOOKS names (pytest has its own)
    assert named.SEEN[-2:] == [1, 2] and hooks.hook("judge") is None


def test_a_wrong_name_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("THYME_HOOKS", "tests.unit.test_hooks:Nope")
    with pytest.raises(ThymeError, match="THYME_HOOKS='tests.unit.test_hooks:Nope'"):
        hooks.hook("steer")
