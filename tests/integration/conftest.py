"""Real servers for the integration tier: a `prefect server` on 127.0.0.1 with its own PREFECT_HOME and its UI
(for the browser tests), and the deployments of infra/prefect.yaml registered on it once."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(cmd: list[str], ready, log_path: Path, name: str, timeout_s: float = 90, env=None):
    """A server process (its own session, output to log_path) that `ready()` answers for; stopped on exit.
    The generous wait is for loaded 2-core CI machines."""
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + timeout_s
        while True:
            try:
                if ready():
                    break
            except Exception:  # noqa: BLE001 - not up yet: any error of the probe means "try again"
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{name} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
        return r.status == 200


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """URL of a real Prefect API, shared by the session's tests."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_API_URL=url)  # the UI must call this port, not the default 4200
    env.pop("PREFECT_API_URL", None)
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with running(cmd, lambda: _healthy(url), home / "server.log", "prefect server", timeout_s=240, env=env):
        yield url


@pytest.fixture
def thyme_env(prefect_server, tmp_path):
    """Environment for running the `thyme` CLI as a subprocess against the real server."""
    return dict(os.environ, PREFECT_API_URL=prefect_server, PREFECT_SERVER_ANALYTICS_ENABLED="false",
                PREFECT_HOME=str(tmp_path / "client-prefect-home"), PYTHONPATH=str(REPO),
                THYME_STATE_DIR=str(tmp_path / "thyme-state"),  # never a long-lived server of the machine's user
                THYME_STORE=str(tmp_path / "thyme-store"))  # nor the user's version store


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


# A real S3-protocol server (moto_server) for the tests that use S3 as the store or as a source.
BUCKET = "thyme-versions"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """moto_server's URL. Its request recorder (off until `recorded` turns it on) writes beside its log."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1")
    cmd = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    folder = tmp_path_factory.mktemp("moto")
    env = dict(os.environ, MOTO_RECORDER_FILEPATH=str(folder / "requests.jsonl"))
    with running(cmd, lambda: client.create_bucket(Bucket=BUCKET), folder / "moto.log", "moto_server", timeout_s=60,
                 env=env):
        yield url


@contextlib.contextmanager
def recorded(endpoint: str):
    """The requests moto_server received inside the block (its own request log: method, url, headers), a
    list filled when the block ends."""
    import json

    call = lambda what: urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/recorder/{what}",
                                                                      method="POST" if what != "download-recording"
                                                                      else "GET"), timeout=10).read()
    call("reset-recording")
    call("start-recording")
    requests: list[dict] = []
    try:
        yield requests
    finally:
        call("stop-recording")
        requests += [json.loads(line) for line in call("download-recording").decode().splitlines() if line.strip()]


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """A fresh prefix in the bucket, configured the standard AWS way (env), and a raw client for tampering."""
    env = {**CREDS, "AWS_ENDPOINT_URL": s3_endpoint}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    uri = f"s3://{BUCKET}/t-{uuid.uuid4().hex[:8]}"
    return uri, boto3.client("s3", endpoint_url=s3_endpoint), dict(os.environ, **env, PYTHONPATH=str(REPO))


@pytest.fixture(scope="module")
def run_store(s3_endpoint):
    """The S3 store training runs of a module share as "workers" with separate homes would (checkpoints, the
    rendezvous address); this process (and the ranks it starts) reach it through the AWS environment, and
    node addresses are 127.0.0.1."""
    from thyme_core.versions.store import open_store

    saved = {k: os.environ.get(k) for k in (*CREDS, "AWS_ENDPOINT_URL", "THYME_NODE_ADDR")}
    os.environ.update(CREDS, AWS_ENDPOINT_URL=s3_endpoint, THYME_NODE_ADDR="127.0.0.1")
    yield open_store(f"s3://{BUCKET}/runs-{uuid.uuid4().hex[:8]}")
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
