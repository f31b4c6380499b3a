"""The pipeline across machines, with real parts: a `prefect server`, `thyme deploy`, two process workers
(`thyme serve --pool cpu` and `--pool gpu`) with different THYME_HOMEs and no disk in common but the S3 store
(moto_server). The thyme-pipeline deployment is triggered as the UI's Run button does, with training and
evaluation: each stage runs as a child run on its pool's worker (read from the API), the dataset and model
versions and the evaluation equal those of a single-home in-process run, a rerun dispatches nothing, and the
versions show in Prefect's asset graph with their upstreams. Last, the gpu worker is SIGKILLed mid-SFT (after a
checkpoint reached the store): its child run is marked CRASHED when its heartbeats stop, the pipeline
dispatches the stage again, and a second gpu worker with an empty home resumes it from the store's checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.integration.conftest import BIN, BUCKET, CREDS, REPO, thyme
from thyme_core.synth import generate_records
from thyme_core.synth.benchmark import write_demo_benchmark
from thyme_core.synth.writer import SCHEMA

HEARTBEAT_TIMEOUT_S = 60  # the zombie automation's (thyme deploy): 30 s heartbeats, so at least one missed
SFT = {"splits": ["2round"], "global_batch": 2, "micro_batch": 1, "nproc": 1, "max_pixels": 12544, "save_steps": 1}


def _client_call(server, fn):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def go():
        with temporary_settings(updates={PREFECT_API_URL: server}):
            async with get_client() as client:
                return await fn(client)

    return asyncio.run(go())


def _trigger(server, name, parameters):
    async def go(client):
        deployment = await client.read_deployment_by_name(name)
        return (await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)).id

    return _client_call(server, go)


def _wait(server, run_id, timeout=1500):
    deadline = time.time() + timeout
    while True:
        state = _client_call(server, lambda c: c.read_flow_run(run_id)).state
        if state.is_final() or time.time() > deadline:
            return state
        time.sleep(2)


def _children(server, run_id):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    async def go(client):
        return await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])))

    return _client_call(server, go)


@dataclass
class Cluster:
    """The module's server-side world: deployments registered, workers by name (each its own home)."""

    root: Path
    env: dict
    store: str
    homes: dict = field(default_factory=dict)  # worker name -> its THYME_HOME
    workers: dict = field(default_factory=dict)  # worker name -> Popen (its own session)

    def start(self, name: str, pool: str, **extra_env) -> None:
        home = self.homes[name] = self.root / f"{name}-home"
        self.workers[name] = subprocess.Popen(
            [str(BIN / "thyme"), "serve", "--pool", pool, "--home", str(home)],
            env=dict(self.env, PREFECT_HOME=str(self.root / f"{name}-prefect-home"), **extra_env), cwd=REPO,
            stdout=open(self.root / f"{name}-worker.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)

    def vanish(self, name: str) -> None:
        """SIGKILL a worker and everything it started, as its machine dying would (a flow run's process has a
        session of its own, so the worker's process group alone would leave it running)."""
        import psutil

        proc = self.workers.pop(name)
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        for p in tree:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait(timeout=30)

    def stop(self) -> None:
        for w in self.workers.values():
            os.killpg(w.pid, 15)
        for w in self.workers.values():
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, 9)


class StallAfterStep2:
    """THYME_HOOKS of the first gpu worker: while the file THYME_TEST_STALL names exists, a training run stops
    after step 2 and its checkpoint (announced, so its push is under way): a worker about to vanish."""

    @staticmethod
    def after_step(step):
        path = os.environ.get("THYME_TEST_STALL", "")
        while step >= 2 and path and os.path.exists(path):
            time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(prefect_server, s3_endpoint, tmp_path_factory):
    """The deployments registered, a cpu and a gpu worker running (the gpu one stalls training on demand)."""
    root = tmp_path_factory.mktemp("cluster")
    store = f"s3://{BUCKET}/dist-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, **CREDS, AWS_ENDPOINT_URL=s3_endpoint, PREFECT_API_URL=prefect_server,
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONPATH=str(REPO), THYME_STORE=store,
               THYME_NODE_ADDR="127.0.0.1", PREFECT_HOME=str(root / "client-prefect-home"),
               THYME_HEARTBEAT_TIMEOUT_S=str(HEARTBEAT_TIMEOUT_S))
    env.pop("AWS_PROFILE", None)
    thyme("deploy", "--home", root / "deploy-home", env=env)
    c = Cluster(root, env, store)
    c.start("cpu", "cpu")
    c.start("gpu", "gpu", THYME_HOOKS="tests.integration.test_distributed:StallAfterStep2",
            THYME_TEST_STALL=str(root / "stall"))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    source = folder / "src.parquet"
    rows = list(generate_records("2round", 6, 4, 256, 192, 1))
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), source, row_group_size=3)
    tsv, responses = write_demo_benchmark(folder, n=4)
    return {"source": str(source), "split": "2round", "shard_rows": 3, "dataset": "synthetic", "sft_steps": 2,
            "sft_overrides": SFT, "eval_tsv": str(tsv), "eval_backend": "scripted",
            "eval_response_file": str(responses), "isolation": "none"}


def _single_home(root, env, inputs):
    """The same pipeline in one process over one home, with a local store: (its summary, the store)."""
    store = root / "single-store"
    code = ("import json, sys\nfrom flows.thyme_pipeline import thyme_pipeline\n"
            f"out = thyme_pipeline(**json.loads(sys.argv[1]), home={str(root / 'single-home')!r}, "
            f"store={str(store)!r}, dispatch='in-process')\nprint('SUMMARY ' + json.dumps(out))\n")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(inputs)], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=1500)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("SUMMARY "))
    return json.loads(line[len("SUMMARY "):]), store


def _outputs(summary):
    return {f"{r['stage']} {r['label']}": r["outputs"] for r in summary["stages"]}


@pytest.fixture(scope="module")
def dispatched(cluster, inputs, prefect_server):
    """The thyme-pipeline deployment run once, as the UI's Run button starts it: its flow run id."""
    root = cluster.root
    run_id = _trigger(prefect_server, "thyme_pipeline/thyme-pipeline", {**inputs, "store": cluster.store})
    state = _wait(prefect_server, run_id)
    assert state.is_completed(), f"{state.type}: {state.message}\n" + (root / "cpu-worker.log").read_text()[-3000:]
    return run_id


def test_stages_run_on_their_pools_and_match_a_single_home_run(cluster, inputs, prefect_server, dispatched,
                                                               monkeypatch):
    from thyme_core.versions.store import open_store

    root, env, store, homes = cluster.root, cluster.env, cluster.store, cluster.homes
    for k in (*CREDS, "AWS_ENDPOINT_URL"):  # this process reads the S3 store too
        monkeypatch.setenv(k, env[k])
    children = _children(prefect_server, dispatched)
    pools = {c.name.rsplit("-", 2)[0]: c.work_pool_name for c in children}  # <stage>-<label>-<key>-a<attempt>
    assert pools == {"prepare-2round": "cpu", "replay-2round": "cpu", "sft-stage1": "gpu", "sft-stage2": "gpu",
                     "evaluate-demo_bench": "gpu"}, pools
    assert all(c.state.is_completed() for c in children)
    # nothing shared but the store: the data stages wrote into the cpu home, training into the gpu home only
    assert (homes["cpu"] / "shards" / "prepare").is_dir()
    assert not [kind for kind in ("sft", "rl") if (homes["cpu"] / "runs" / kind).exists()]  # (data run records only)
    prepared_on_gpu = homes["gpu"] / "shards" / "prepare"  # (only the typed empty `_schema` part, if any)
    assert (homes["gpu"] / "runs" / "sft").is_dir()
    assert not [p for p in prepared_on_gpu.iterdir() if p.name != "_schema"] if prepared_on_gpu.exists() else True

    env_local = dict(env)
    env_local.pop("THYME_STORE")
    single, single_store = _single_home(root, env_local, inputs)
    assert single["mode"] == "in-process"
    s3 = open_store(store)
    from thyme_core.versions import refs

    ours = {name: refs.read(s3, name, "latest")[0].manifest for name in ("synthetic-sft1", "synthetic-sft2")}
    theirs = {name: refs.read(open_store(str(single_store)), name, "latest")[0].manifest for name in ours}
    assert ours == theirs  # the same weights, byte for byte
    sql = "SELECT split, count(*) FROM sft_samples GROUP BY split UNION ALL SELECT 'replays', count(*) FROM replays"
    from thyme_core.versions.query import query_version

    assert sorted(query_version(s3, "synthetic", sql)[1]) == sorted(query_version(open_store(str(single_store)),
                                                                                   "synthetic", sql)[1])
    evaluated = json.loads(s3.get_bytes(next(k for k in s3.list_keys("stages/")
                                             if json.loads(s3.get_bytes(k))["stage"] == "evaluate")))
    assert {k: evaluated["summary"][k] for k in ("samples", "correct")} == {"samples": 4, "correct": 2}

    # a rerun: every stage's key is recorded, so nothing is dispatched
    again = _trigger(prefect_server, "thyme_pipeline/thyme-pipeline", {**inputs, "store": store})
    assert _wait(prefect_server, again).is_completed()
    assert _children(prefect_server, again) == []


def test_versions_show_in_the_prefect_asset_graph_with_their_upstreams(prefect_server, dispatched):
    """Each published version is a materialization of its asset (thyme://<kind>/<name>), the versions it was
    made from its upstream assets: Prefect's own asset tracking, read back from the server's events."""
    import httpx

    body = {"filter": {"event": {"prefix": ["prefect.asset.materialization.succeeded"]},
                       "occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50}  # the API allows 50 a page
    events = httpx.post(f"{prefect_server}/events/filter", json=body, timeout=30).json()["events"]
    upstream = {}
    for e in events:
        related = {r["prefect.resource.id"] for r in e.get("related", []) if r.get("prefect.resource.role") == "asset"}
        upstream.setdefault(e["resource"]["prefect.resource.id"], set()).update(related)
    assert upstream["thyme://model/synthetic-sft2"] >= {"thyme://model/synthetic-sft1", "thyme://dataset/synthetic"}
    assert "thyme://dataset/synthetic" in upstream["thyme://model/synthetic-sft1"]
    assert "thyme://dataset/synthetic" in upstream


@pytest.mark.slow  # opt-in (make test-slow): a heartbeat timeout and three more SFT child runs
def test_a_gpu_worker_that_vanishes_mid_sft_is_replaced_and_the_retry_resumes_from_the_store(
        cluster, inputs, prefect_server, monkeypatch):
    """The gpu worker running SFT stage 1 is SIGKILLed, with everything it started, once step 2's checkpoint
    is in the store. Its child run goes CRASHED when its heartbeats stop (thyme deploy's automation), the
    pipeline dispatches the stage again, a second gpu worker with an empty home takes it and resumes from the
    store's checkpoint, and the pipeline completes. (Last in the module: the first gpu worker is gone after.)"""
    from thyme_core.versions.store import open_store

    for k in (*CREDS, "AWS_ENDPOINT_URL"):
        monkeypatch.setenv(k, cluster.env[k])
    s3 = open_store(cluster.store)
    before = set(s3.list_keys("checkpoints/"))
    stall = cluster.root / "stall"
    stall.write_text("")  # the first gpu worker's runs stop after step 2 from now on
    params = {**inputs, "store": cluster.store, "sft_steps": 3, "sft_overrides": {**SFT, "epochs": 2},
              "eval_tsv": ""}
    run_id = _trigger(prefect_server, "thyme_pipeline/thyme-pipeline", params)
    deadline = time.time() + 900
    while True:
        pushed = [k for k in s3.list_keys("checkpoints/") if k not in before
                  and k.endswith("/step-0000002.world-1.json")]
        if pushed:
            break
        state = _client_call(prefect_server, lambda c: c.read_flow_run(run_id)).state
        assert not state.is_final() and time.time() < deadline, (state, (cluster.root / "gpu-worker.log").read_text()[-3000:])
        time.sleep(2)
    run_key = pushed[0].split("/")[1]
    cluster.vanish("gpu")
    cluster.start("gpu-b", "gpu")  # an empty home, no stall
    state = _wait(prefect_server, run_id)
    stall.unlink()
    assert state.is_completed(), f"{state.type}: {state.message}\n" + (cluster.root / "gpu-b-worker.log").read_text()[-3000:]

    children = {c.name: c.state for c in _children(prefect_server, run_id)}
    first = next(n for n in children if n.startswith("sft-stage1-") and not n.endswith("-r2"))
    assert children[first].is_crashed(), children[first]
    assert children[f"{first}-r2"].is_completed()
    resumed = cluster.homes["gpu-b"] / "runs" / "sft" / "stage1" / run_key / "metrics.jsonl"
    records = [json.loads(line) for line in resumed.read_text().splitlines()]
    assert {"event": "resumed", "step": 2} in records  # from the store: this home never saw step 1 or 2
    assert [m["step"] for m in records if "loss" in m] == [3]
    # and step 3 is the uninterrupted run's: the same run folder (config, samples), no checkpoint, no store
    from thyme_core.runs import remote

    again = cluster.root / "uninterrupted" / run_key
    again.mkdir(parents=True)
    for name in ("config.json", "samples.parquet"):
        (again / name).write_bytes((resumed.parent / name).read_bytes())
    info = json.loads((resumed.parent / "run.json").read_text())
    (again / "run.json").write_text(json.dumps({**info, "store": None}))
    lines: list[str] = []
    assert remote.launch("thyme_core.sft.entry", again, 1, lines.append, lambda m: None) == 0, lines[-30:]
    straight = [json.loads(line) for line in (again / "metrics.jsonl").read_text().splitlines()]
    loss = {m["step"]: m["loss"] for m in straight if "loss" in m}
    assert [m["loss"] for m in records if "loss" in m] == pytest.approx([loss[3]], rel=1e-4, abs=1e-5)
