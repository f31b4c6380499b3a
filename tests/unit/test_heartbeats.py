"""Every flow run a thyme process starts heartbeats often enough for `thyme deploy`'s crash automation. With
Prefect's default (a heartbeat every 180 s) a command's in-process run against a server with the automation
(timeout 90 s) was marked CRASHED while it ran, then Completed (seen against a real server: CRASHED at 45 s of
an 80 s run with a 40 s timeout)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from thyme_core.base.errors import ThymeError

REPO = Path(__file__).resolve().parents[2]


def test_a_commands_flow_runs_heartbeat_at_the_workers_interval(tmp_path):
    code = ("import sys\nfrom thyme_cli.main import main, HEARTBEAT_S\nmain(['server', 'status'])\n"
            "from prefect.settings import get_current_settings\n"
            "print('HEARTBEAT', get_current_settings().flows.heartbeat_frequency, HEARTBEAT_S)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(tmp_path / "prefect"), THYME_STATE_DIR=str(tmp_path / "state"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("HEARTBEAT"))
    _, seen, wanted = line.split()
    assert seen == wanted == "30", out.stdout + out.stderr


def test_a_crash_timeout_not_above_the_heartbeat_interval_is_refused():
    from thyme_cli.cmd_deploy import ensure_crash_detection

    with pytest.raises(ThymeError, match="must be above the 30 s between heartbeats"):
        ensure_crash_detection(30)  # (refused before any API call: no server here)
