"""User errors in Prefect's logs: one line, first, and not repeated.

A ThymeError (a bad path, a missing column, no samples in the chosen splits, a bad parameter) is logged by
Prefect with its traceback at every level it passes: the task run, the flow run, each parent flow run. The
traceback of a user error only buries its message. `install()` adds a filter to Prefect's run loggers that
rewrites the first record of each such error to `error: <message>`, without the traceback, and drops the
later records of the same error, in the terminal and in the UI alike. THYME_DEBUG=1 (`thyme --debug`)
leaves Prefect's logging untouched. Under the `thyme` CLI (`cli_reports_errors`), which prints the error itself as
its last line, the terminal copy is dropped too, so the terminal shows it once; the UI keeps it.
"""

from __future__ import annotations

import logging
import os

from thyme_core.base.errors import ThymeError

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
cli_reports_errors = False  # set by thyme_cli.main: the CLI prints the error line itself


class UserErrorFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []  # messages already logged (an error re-raised as a copy is the same text)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, ThymeError):
            return True
        text = f"error: {exc}"
        if getattr(exc, "_thyme_logged", False) or text in self.seen:
            return False
        exc._thyme_logged = True
        self.seen = [*self.seen[-31:], text]
        record.msg, record.args = text, ()
        record.exc_info, record.exc_text = None, None
        record.thyme_user_error = True
        return True


class _NotUserErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "thyme_user_error", False)


def install() -> None:
    """Idempotent; called by every flow module at import (the CLI and a worker's flow process alike)."""
    if os.environ.get("THYME_DEBUG"):
        return
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, UserErrorFilter) for f in logger.filters):
            logger.addFilter(_FILTER)
    if cli_reports_errors:
        from prefect.logging.handlers import PrefectConsoleHandler

        for handler in logging.getLogger().handlers:  # Prefect's console handler sits on the root logger
            if isinstance(handler, PrefectConsoleHandler) and not any(
                    isinstance(f, _NotUserErrors) for f in handler.filters):
                handler.addFilter(_NotUserErrors())


_FILTER = UserErrorFilter()
