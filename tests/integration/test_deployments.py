"""Deployments end to end: `thyme deploy` registers infra/prefect.yaml on a real server, a run is created
through the API exactly as the UI's Run button does (custom parameters), a `thyme serve` process worker runs
it (stages in-process: test_distributed.py covers dispatch to the pools); a rerun skips finished stages; a
changed replay parameter recomputes only the replay stage."""

from __future__ import annotations

import asyncio
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.integration.conftest import thyme
from thyme_core.synth import generate_records
from thyme_core.synth.writer import SCHEMA


def _folders(home, table):
    root = home / "shards" / table
    return {p.name: p.stat().st_mtime_ns for p in root.iterdir() if p.name != "_schema"} if root.exists() else {}


def _run_deployment(server, name, parameters):
    """What the UI's Run button does: a flow run from the deployment, with the form's parameters."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def go():
        with temporary_settings(updates={PREFECT_API_URL: server}):
            async with get_client() as client:
                deployment = await client.read_deployment_by_name(name)
                run = await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
                return run.id

    return asyncio.run(go())


def _state(server, run_id):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def go():
        with temporary_settings(updates={PREFECT_API_URL: server}):
            async with get_client() as client:
                return (await client.read_flow_run(run_id)).state

    return asyncio.run(go())


def test_ui_run_of_the_pipeline_deployment_then_reruns(tmp_path, deployed, prefect_server):
    _, thyme_env, _ = deployed
    home = tmp_path / "home"  # the runs' own home: the counts below are of this test's folders only
    source = tmp_path / "src.parquet"
    rows = list(generate_records("2round", 6, 4, 256, 192, 1))
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), source, row_group_size=3)

    store = tmp_path / "store"

    def run(**params):
        parameters = {"source": str(source), "split": "2round", "home": str(home), "shard_rows": 3,
                      "dataset": "synthetic", "store": str(store), "dispatch": "in-process", **params}
        run_id = _run_deployment(prefect_server, "thyme_pipeline/thyme-pipeline", parameters)
        thyme("serve", "--pool", "cpu", "--run-once", "--home", home, env=thyme_env, timeout=300)
        state = _state(prefect_server, run_id)
        assert state.is_completed(), f"{state.type}: {state.message}"

    versions = lambda: [h["manifest"] for h in json.loads((store / "refs/synthetic/latest.json").read_text())["history"]]
    prepared_version = lambda: json.loads((store / "refs/synthetic/prepared.json").read_text())["manifest"]
    run()
    prepared, replayed = _folders(home, "prepare"), _folders(home, "replay")
    assert len(prepared) == 2 and len(replayed) == 2 and len(versions()) == 1
    run()  # same parameters: every stage served from what is already published, no new version
    assert _folders(home, "prepare") == prepared and _folders(home, "replay") == replayed
    assert len(versions()) == 1
    run(min_similarity=0.9)  # only the replay depends on it (and the version, which holds the replays)
    assert _folders(home, "prepare") == prepared and _folders(home, "replay") == replayed
    # replayed on a checkout of the prepared version (the home holds the first replay's version)
    checkout = home / "datasets" / prepared_version()
    assert len(_folders(checkout, "replay")) == 2 and _folders(checkout, "prepare").keys() == prepared.keys()
    assert len(versions()) == 2


def test_deploy_without_a_server_is_a_clear_error(tmp_path, thyme_env):
    env = dict(thyme_env)
    env.pop("PREFECT_API_URL")
    out = thyme("deploy", "--home", tmp_path, env=env, check=False)
    assert out.returncode == 2 and "no Prefect API: PREFECT_API_URL is not set" in out.stderr


@pytest.mark.parametrize("name", ["prepare_sft_data/prepare-sft-data", "replay_sft_data/replay-sft-data",
                                  "evaluate/evaluate", "train_sft/train-sft", "train_rl/train-rl",
                                  "thyme_pipeline/thyme-pipeline-nightly"])
def test_every_deployment_is_registered_with_a_parameter_form(deployed, prefect_server, name):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def go():
        with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
            async with get_client() as client:
                return await client.read_deployment_by_name(name)

    deployment = asyncio.run(go())
    props = deployment.parameter_openapi_schema["properties"]
    gpu = name.startswith(("train", "evaluate"))
    assert "home" in props and deployment.work_pool_name == ("gpu" if gpu else "cpu")
    assert all(p.get("description") for p in props.values())  # the form explains every field
    if name.endswith("nightly"):
        assert deployment.schedules and deployment.schedules[0].schedule.cron == "0 2 * * *"
        # its defaults follow the --home given to `thyme deploy`, not the machine-wide default store
        home = deployed[0]
        assert deployment.parameters["store"] == str(home.parent / "home-store")
        assert deployment.parameters["source"] == str(home / "incoming")


def test_deploy_advice_names_thyme_serve(deployed):
    home, _, out = deployed
    assert f"thyme serve --pool cpu --home {home}" in out and "prefect worker start" not in out
