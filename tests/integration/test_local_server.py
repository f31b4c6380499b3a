"""`thyme server start|status|stop`: one long-lived local Prefect API that `thyme` commands find and reuse (no
temporary API of their own), and user errors through it: one line, exit 2, a traceback only with --debug."""

from __future__ import annotations

import asyncio
import os

import pyarrow as pa
import pyarrow.parquet as pq

from tests.integration.conftest import REPO, free_port, thyme
from thyme_core.synth import generate_records
from thyme_core.synth.writer import SCHEMA


def _flow_runs(url: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def go():
        with temporary_settings(updates={PREFECT_API_URL: url}):
            async with get_client() as client:
                return await client.read_flow_runs()

    return asyncio.run(go())


def test_commands_reuse_the_local_server_until_it_stops(tmp_path):
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect-home"), THYME_STATE_DIR=str(tmp_path / "state"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONPATH=str(REPO))
    env.pop("PREFECT_API_URL", None)
    source = tmp_path / "src.parquet"
    pq.write_table(pa.Table.from_pylist(list(generate_records("2round", 4, 2, 128, 96, 1)), schema=SCHEMA), source)
    port = free_port()
    thyme("server", "start", "--port", port, "--timeout", 240, env=env)
    try:
        url = f"http://127.0.0.1:{port}/api"
        assert url in thyme("server", "status", env=env).stdout
        assert "already running" in thyme("server", "start", "--port", port, env=env).stdout

        out = thyme("prepare", source, "--split", "two.v2", "--home", tmp_path / "home", env=env)
        assert "temporary server" not in out.stdout + out.stderr  # no API of its own
        assert [r.state_type.value for r in _flow_runs(url)] == ["COMPLETED"]  # the run is on the long-lived one

        missing = tmp_path / "missing.parquet"
        bad = thyme("prepare", missing, "--split", "x", "--home", tmp_path / "home", env=env, check=False)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert bad.stderr.strip().splitlines()[-1] == f"thyme prepare: error: {missing}: no such file or folder"
        debug = thyme("--debug", "prepare", missing, "--split", "x", "--home", tmp_path / "home", env=env, check=False)
        assert debug.returncode != 0 and "Traceback" in debug.stderr
    finally:
        thyme("server", "stop", env=env)
    assert thyme("server", "status", env=env, check=False).returncode == 3
