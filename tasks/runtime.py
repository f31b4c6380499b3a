"""One Prefect API for a whole run, started while the run's own start-up work proceeds.

With no PREFECT_API_URL, Prefect starts a temporary ("ephemeral") server per process. Entry points that run
flows start it once, here, and export its URL, so anything they spawn reports to the same place (the same
PREFECT_HOME database). The server takes seconds to import and boot, so it starts in a background thread
while the caller's `meanwhile` work (warming the worker pool) runs. With PREFECT_API_URL set (a real
`prefect server`, Prefect Cloud) no server is started and `meanwhile` runs in the background beside the
flow's start-up (the first shard waits for the pool it warms, never for the thread).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Callable, Iterator


@contextlib.contextmanager
def shared_prefect_api(meanwhile: Callable[[], object] | None = None) -> Iterator[str | None]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if os.environ.get("PREFECT_API_URL"):
        if meanwhile:  # nothing to wait for: let it run beside the flow's own start-up
            threading.Thread(target=_quietly, args=(meanwhile,), name="thyme-warm-up", daemon=True).start()
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


def _quietly(fn: Callable[[], object]) -> None:
    """Run a warm-up in the background: it only saves time, so if the run ends first (the pool already shut
    down) or it fails, the real work reports its own errors."""
    try:
        fn()
    except Exception as exc:
        logging.getLogger(__name__).debug("background warm-up skipped: %s", exc)


def _drain_to_api() -> None:
    """Send queued logs and events while the server still runs (else they retry against a closed port)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)
