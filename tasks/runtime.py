"""One Prefect API for a whole run, subprocess task workers included.

With no PREFECT_API_URL, Prefect starts a temporary ("ephemeral") server per process; the workers of a
ProcessPoolTaskRunner would each start their own and record their task runs apart from the flow's. So
entry points that run flows start the temporary server once, here, and export its URL: spawned workers
inherit it through the environment, and everything lands in one place (the same PREFECT_HOME database).
With PREFECT_API_URL set (a real `prefect server` or Prefect Cloud) this does nothing.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator


@contextlib.contextmanager
def shared_prefect_api() -> Iterator[str | None]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        _drain_to_api()
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def _drain_to_api() -> None:
    """Send queued logs and events while the server still runs (else they retry against a closed port)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)
