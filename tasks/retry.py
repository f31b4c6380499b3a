"""Retry policy shared by the I/O tasks: retry transient failures, never a user error (ThymeError),
which would fail the same way again and only delay the clear message."""

from __future__ import annotations

from thyme_core.base.errors import ThymeError


def retry_unless_user_error(task, task_run, state) -> bool:
    try:
        state.result()
    except ThymeError:
        return False
    except Exception:
        return True
    return False
