"""The temporary Prefect API of a command: a boot that times out is retried once, then said in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from thyme_core.base.errors import ThymeError


class NeverAnswers:
    """Stands in for prefect's SubprocessASGIServer on a machine too busy to boot it in time."""

    started: list = []
    stopped: list = []

    def __init__(self):
        self.api_url = "http://127.0.0.1:1/api"

    def start(self, timeout=None):
        NeverAnswers.started.append(timeout)
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server. stdout: ...")

    def stop(self):
        NeverAnswers.stopped.append(self)


def test_boot_timeout_is_retried_once_then_one_clear_line(monkeypatch):
    import prefect.server.api.server as server_module

    from tasks import runtime

    monkeypatch.setattr(server_module, "SubprocessASGIServer", NeverAnswers)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("THYME_STATE_DIR", "/nonexistent-thyme-state")  # no long-lived server to find
    warmed = []
    with pytest.raises(ThymeError) as err:
        with runtime.shared_prefect_api(meanwhile=lambda: warmed.append(1)):
            pytest.fail("the body must not run without an API")
    message = str(err.value)
    assert "\n" not in message and "thyme server start" in message and "stdout" not in message
    # two attempts, each with the wait sized for a slow machine, each server stopped; the warm-up ran once
    assert len(NeverAnswers.started) == 2 and min(NeverAnswers.started) >= runtime.EPHEMERAL_BOOT_S
    assert len(NeverAnswers.stopped) == 2 and warmed == [1]


def test_a_warm_up_beside_the_flow_start_never_imports_a_shared_import_cycle_at_the_same_time(tmp_path):
    # CI failure: `thyme prepare --cluster ray://...`: Ray's client imported pydantic.v1 in the warm-up thread
    # while Prefect imported it in the main thread for the flow's parameters: "cannot import name 'Field' from
    # partially initialized module". The cycle must be imported before the warm-up thread exists (checked in a
    # fresh interpreter, where nothing imported it yet).
    import subprocess
    import sys

    script = """
import os, sys, threading
os.environ["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
from tasks import runtime
assert "pydantic.v1" not in sys.modules, "precondition: a fresh interpreter"
seen, ran = [], threading.Event()
def warm():
    seen.extend(name in sys.modules for name in runtime.SHARED_CYCLIC_IMPORTS)
    ran.set()
with runtime.shared_prefect_api(meanwhile=warm):
    ran.wait(30)
print(seen)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[True]"
