"""A user error in Prefect's run logs: one line without traceback, once; other errors keep theirs."""

from __future__ import annotations

import logging

from tasks.user_errors import UserErrorFilter
from thyme_core.base.errors import ThymeError


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


def _logger():
    logger = logging.getLogger("test.user_errors")
    logger.propagate = False
    logger.handlers, logger.filters = [], []
    capture = _Capture()
    logger.addHandler(capture)
    logger.addFilter(UserErrorFilter())
    return logger, capture.records


def _log_exception(logger, exc, text):
    try:
        raise exc
    except Exception:
        logger.exception(text)


def test_user_error_logged_once_as_one_line():
    logger, records = _logger()
    err = ThymeError("/data/x.parquet: no such file or folder")
    _log_exception(logger, err, "Task run failed with exception: %r")  # the task run
    _log_exception(logger, err, "Encountered exception during execution: %r")  # its flow run
    # a parent flow gets a copy of the exception (same text, another object)
    _log_exception(logger, ThymeError("/data/x.parquet: no such file or folder"), "Encountered exception: %r")
    assert [(r.getMessage(), r.exc_info) for r in records] == [("error: /data/x.parquet: no such file or folder", None)]


def test_other_errors_keep_their_traceback():
    logger, records = _logger()
    _log_exception(logger, ValueError("a bug"), "Encountered exception during execution: %r")
    assert len(records) == 1 and records[0].exc_info[0] is ValueError
