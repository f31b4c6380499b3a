"""One Prefect API for a whole run, started while the run's own start-up work proceeds.

Which API a command talks to, in order: PREFECT_API_URL when set (a real `prefect server`, Prefect Cloud);
else the long-lived local server of `thyme server start` when it runs (tasks/local_api.py); else a
temporary ("ephemeral") server started here, once per command, and exported so anything the command
spawns reports to the same place (the same PREFECT_HOME database). The temporary server takes seconds to
import and boot (far more on a busy machine: its wait is EPHEMERAL_BOOT_S, not Prefect's 20 s default, and
a failed boot is retried once, then reported in one line), so it starts in a background thread while the
caller's `meanwhile` work (warming the worker pool) runs. With a running API, `meanwhile` runs in the
background beside the flow's start-up (the first shard waits for the pool it warms, never for the thread).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Callable, Iterator

from thyme_core.base.errors import ThymeError

EPHEMERAL_BOOT_S = 90  # per attempt; Prefect's PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS wins if larger


@contextlib.contextmanager
def shared_prefect_api(meanwhile: Callable[[], object] | None = None) -> Iterator[str | None]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not os.environ.get("PREFECT_API_URL"):
        from tasks import local_api

        server = local_api.find()
        if server:
            with _api_url(server.url, meanwhile):
                yield server.url
            return
    if os.environ.get("PREFECT_API_URL"):
        if meanwhile:  # nothing to wait for: let it run beside the flow's own start-up
            _beside(meanwhile)
        yield os.environ["PREFECT_API_URL"]
        return
    url, stop = _boot_ephemeral(meanwhile)
    try:
        with _api_url(url, None):
            yield url
    finally:
        stop()


@contextlib.contextmanager
def _api_url(url: str, meanwhile: Callable[[], object] | None) -> Iterator[None]:
    """PREFECT_API_URL=url for this process and its children, for the duration."""
    if meanwhile:
        _beside(meanwhile)
    os.environ["PREFECT_API_URL"] = url
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield
    finally:
        _drain_to_api()
        os.environ.pop("PREFECT_API_URL", None)


def _boot_ephemeral(meanwhile: Callable[[], object] | None) -> tuple[str, Callable[[], None]]:
    """Start a temporary API (twice at most); returns its URL and its stop function."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    timeout = max(EPHEMERAL_BOOT_S, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    for attempt in (1, 2):
        server = SubprocessASGIServer()
        failure: list[BaseException] = []

        def boot():
            try:
                server.start(timeout=timeout)
            except BaseException as exc:  # reported in the caller's thread below
                failure.append(exc)

        booting = threading.Thread(target=boot, name="prefect-ephemeral-server", daemon=True)
        booting.start()
        try:
            if meanwhile and attempt == 1:
                meanwhile()
        finally:
            booting.join()
        if not failure:
            return server.api_url, server.stop
        server.stop()
        logging.getLogger(__name__).debug("temporary Prefect API, attempt %d: %s", attempt, failure[0])
    raise ThymeError(f"the temporary Prefect API did not start within {timeout} s (twice; is the machine "
                     "overloaded?): start a long-lived one with `thyme server start`, or set PREFECT_API_URL") \
        from failure[0]


# Packages with import cycles inside them that both a warm-up (Ray's client registers pydantic serializers
# as it connects) and the flow's start-up (Prefect checks parameters for pydantic v1 models) import. Two
# threads importing one cycle at once can see a half-initialized module ("cannot import name 'Field' from
# partially initialized module 'pydantic.v1.fields'"): import them here, once, before there are two threads.
SHARED_CYCLIC_IMPORTS = ("pydantic.v1",)


def _beside(meanwhile: Callable[[], object]) -> None:
    """Start `meanwhile` in a background thread, after the imports it shares with this thread."""
    import importlib

    for name in SHARED_CYCLIC_IMPORTS:
        importlib.import_module(name)
    threading.Thread(target=_quietly, args=(meanwhile,), name="thyme-warm-up", daemon=True).start()


def _quietly(fn: Callable[[], object]) -> None:
    """Run a warm-up in the background: it only saves time, so if the run ends first (the pool already shut
    down) or it fails, the real work reports its own errors."""
    try:
        fn()
    except Exception as exc:
        logging.getLogger(__name__).debug("background warm-up skipped: %s", exc)


def _drain_to_api() -> None:
    """Send queued logs and events while the API is still reachable (else they retry against a closed port)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)
