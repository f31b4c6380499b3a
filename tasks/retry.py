"""Retry policy shared by the I/O tasks: retry transient failures, never a user error (ThymeError),
which would fail the same way again and only delay the clear message.

A task that is not retried because of a user error logs it here, so in the run's logs its one `error: ...`
line (tasks/user_errors.py) comes first, before Prefect's own line about the failed task."""

from __future__ import annotations

from thyme_core.base.errors import ThymeError


def retry_unless_user_error(task, task_run, state) -> bool:
    try:
        state.result()
    except ThymeError as exc:
        from prefect import get_run_logger
        from prefect.exceptions import MissingContextError

        try:
            get_run_logger().error("user error", exc_info=exc)
        except MissingContextError:  # called outside a task run (a test of the policy itself)
            pass
        return False
    except Exception:
        return True
    return False
