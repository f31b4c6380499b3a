"""Hooks: how tests and experiments reach into a run without a switch in production code.

`THYME_HOOKS=module:object` names an object whose optional attributes a run calls at fixed points. It is read
in every process of a run (torchrun ranks included), since the environment is what reaches them all:
- `steer(backend)`: adjust a rollout backend (the tests add logits processors that walk the random tiny model
  through scripts);
- `judge()`: the RL judge to use instead of the one from the environment;
- `after_step(step)`: called by SFT and RL after each optimizer step, and after its checkpoint when one is
  due (the kill-and-resume tests SIGKILL the process there).
Unset, every hook is absent and a run does nothing extra.
"""

from __future__ import annotations

import importlib
import os

from thyme_core.base.errors import ThymeError

HOOKS_ENV = "THYME_HOOKS"


def hook(name: str):
    """The hook `name` of the object THYME_HOOKS names, or None."""
    spec = os.environ.get(HOOKS_ENV, "")
    if not spec:
        return None
    module, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ThymeError(f"{HOOKS_ENV}={spec!r}: {exc}") from None
    return getattr(obj, name, None)


def after_step(step: int) -> None:
    fn = hook("after_step")
    if fn is not None:
        fn(step)
