"""One Prefect API for a whole run, started while the run's own start-up work proceeds.

With no PREFECT_API_URL, Prefect starts a temporary ("ephemeral") server per process. Entry points that run
flows start it once, here, and export its URL, so anything they spawn reports to the same place (the same
PREFECT_HOME database). The server takes seconds to import and boot, so it starts in a background thread
while the caller's `meanwhile` work (importing the flow, warming the worker pool) runs. With
PREFECT_API_URL set (a real `prefect server`, Prefect Cloud) no server is started.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Callable, Iterator


@contextlib.contextmanager
def shared_prefect_api(meanwhile: Callable[[], object] | None = None) -> Iterator[str | None]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if os.environ.get("PREFECT_API_URL"):
        if meanwhile:
            meanwhile()
        yield os.environ["PREFECT_API_URL"]
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()
    failure: list[BaseException] = []

    def boot():
        try:
            server.start()
        except BaseException as exc:  # reported in the caller's thread below
            failure.append(exc)

    booting = threading.Thread(target=boot, name="prefect-ephemeral-server", daemon=True)
    booting.start()
    try:
        if meanwhile:
            meanwhile()
    finally:
        booting.join()
    if failure:
        raise failure[0]
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
