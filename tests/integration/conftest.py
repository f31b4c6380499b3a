"""Real servers for the integration tier: a `prefect server` on 127.0.0.1 with its own PREFECT_HOME and its UI
(for the browser tests), and the deployments of infra/prefect.yaml registered on it once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """URL of a real Prefect API, shared by the session's tests."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_API_URL=url)  # the UI must call this port, not the default 4200
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 240  # ~8 s on a quiet 2-core machine; minutes when other jobs load it
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            os.killpg(proc.pid, 9)
            raise RuntimeError(f"prefect server did not start:\n{(home / 'server.log').read_text()[-3000:]}")
        time.sleep(0.3)
    yield url
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)
    log.close()


@pytest.fixture
def thyme_env(prefect_server, tmp_path):
    """Environment for running the `thyme` CLI as a subprocess against the real server."""
    return dict(os.environ, PREFECT_API_URL=prefect_server, PREFECT_SERVER_ANALYTICS_ENABLED="false",
                PREFECT_HOME=str(tmp_path / "client-prefect-home"), PYTHONPATH=str(REPO),
                THYME_STATE_DIR=str(tmp_path / "thyme-state"))  # never a long-lived server of the machine's user


@pytest.fixture(scope="session")
def deployed(prefect_server, tmp_path_factory):
    """`thyme deploy` once for the session (the worker's home: tests that count its folders give their runs a
    home of their own); returns (home, env, its stdout)."""
    root = tmp_path_factory.mktemp("deployed")
    env = dict(os.environ, PREFECT_API_URL=prefect_server, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_HOME=str(root / "client-prefect-home"), PYTHONPATH=str(REPO),
               THYME_STATE_DIR=str(root / "thyme-state"))
    out = thyme("deploy", "--home", root / "home", env=env)
    return root / "home", env, out.stdout


def deployment_id(server: str, name: str):
    """(Prefect's sync client: callable where an event loop runs already, as under playwright's sync API.)"""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server}):
        with get_client(sync_client=True) as client:
            return client.read_deployment_by_name(name).id


def thyme(*args, env, check=True, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(BIN / "thyme"), *map(str, args)], env=env, cwd=REPO, capture_output=True,
                         text=True, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"thyme {' '.join(map(str, args))} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return out
