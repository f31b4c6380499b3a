"""`thyme serve` never leaves its Prefect worker behind: a stopped serve stops its worker, and kills one that
does not stop (the integration tier left two workers polling a dead API for ever when they outlived it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SERVE = """
import os, sys
from thyme_cli import cmd_deploy
cmd_deploy.WORKER_STOP_S = 1
sys.exit(cmd_deploy.run_worker([sys.executable, "-c", sys.argv[1], sys.argv[2]], dict(os.environ)))
"""
# The stand-in worker writes its pid, then either ignores SIGTERM (a stuck shutdown) or exits on it.
WORKER = """
import os, signal, sys, time
if sys.argv[1] == "stuck":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(os.environ["PIDFILE"], "w").write(str(os.getpid()))
while True:
    time.sleep(0.1)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("worker", ["stuck", "obedient"])
def test_a_terminated_serve_leaves_no_worker(tmp_path, worker):
    pidfile = tmp_path / "worker.pid"
    serve = subprocess.Popen([sys.executable, "-c", SERVE, WORKER, worker], cwd=REPO,
                             env=dict(os.environ, PIDFILE=str(pidfile), PYTHONPATH=str(REPO)))
    deadline = time.time() + 60
    while not (pidfile.exists() and pidfile.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    child = int(pidfile.read_text())
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=30) == 128 + signal.SIGTERM
    assert not _alive(child), f"the worker ({worker}) outlived its serve"
