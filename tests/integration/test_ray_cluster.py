"""`--cluster` on a real Ray cluster: a head and a second node (one CPU each, the second with one GPU slot) as
separate processes on 127.0.0.1 in a private network namespace (ray_cluster_run.py). Prepare and replay of
synthetic data publish the version a local run's push makes, byte for byte, although a worker process was
killed mid-shard; the scripted evaluation scores as the local one; a rerun runs nothing. An s3:// source
(on a moto_server: Parquet of base64 images, JSONL naming image objects by relative path) prepared on the
cluster, whose nodes know no S3 endpoint but the one each task carries, publishes the version a local prepare
of the same objects makes, and no GET of the Parquet object asked for all of it. The same for an hf:// source on
a fake Hub only the driver knows the address of. The evaluation's driver reads its benchmark, responses and
model folder from a folder no node sees (a tmpfs in its own mount namespace): they reach the workers through the
store (the model as a model version each node pulls), and the trajectories are tokenized by that model."""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO
from tests.fakes import source_with_image_files, upload_folder
from tests.integration.conftest import BIN, BUCKET
from thyme_core import prepare, replay
from thyme_core.agent.config import AgentConfig
from thyme_core.agent.infer import BackendSpec
from thyme_core.base.home import DataHome
from thyme_core.eval import evaluate
from thyme_core.model import ensure_tiny_model
from thyme_core.synth import bad, generate_records
from thyme_core.synth.benchmark import write_demo_benchmark
from thyme_core.synth.writer import SCHEMA
from thyme_core.versions.push import push
from thyme_core.versions.query import query_version
from thyme_core.versions.store import LocalStore

SPLIT = "2round"
SHARD_ROWS = 4
HUB_SHA = "3" * 40
EVAL_ROWS = "SELECT index, category, prediction, choice, answer, correct, stop_reason FROM eval_results ORDER BY index::INT"
EVAL_TOKENS = "SELECT sample_id, total_tokens, token_ids FROM trajectories ORDER BY sample_id"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or not (BIN / "ray").exists(),
    reason="needs root (unshare -n for a private network namespace) and Ray (the cluster extra)")


def local_run(source, tsv, responses, model: Path, root: Path) -> dict:
    """The same work on this machine through the same core functions a local `thyme` run calls."""
    home, store = DataHome(root / "home"), LocalStore(root / "store")
    config = prepare.PrepareConfig(shard_rows=SHARD_ROWS)
    for spec in prepare.plan(source, SPLIT, config, home):
        prepare.prepare_shard(spec, home, config)
    prepared = push(home, store, "sft").manifest
    for shard in replay.prepared_shards(home, SPLIT):
        replay.replay_shard(Path(shard), home, replay.ReplayConfig(isolation="none"))
    replayed = push(home, store, "sft").manifest
    spec, agent = BackendSpec("scripted", str(model), str(responses)), AgentConfig(isolation="none")
    eval_home = DataHome(root / "eval-home")
    for shard in evaluate.plan(tsv, spec, agent, shard_rows=3):
        evaluate.eval_shard(shard, eval_home, spec, agent)
    push(eval_home, store, "eval")
    return {"prepared": prepared, "replayed": replayed, "eval": query_version(store, "eval", EVAL_ROWS)[1],
            "eval_tokens": query_version(store, "eval", EVAL_TOKENS)[1]}


def local_s3_run(uri: str, root: Path) -> str:
    """A local prepare of an s3:// source (this process's S3 endpoint: the test's moto_server), pushed."""
    home, config = DataHome(root / "s3-home"), prepare.PrepareConfig(shard_rows=SHARD_ROWS)
    for spec in prepare.plan(uri, SPLIT, config, home):
        prepare.prepare_shard(spec, home, config)
    return push(home, LocalStore(root / "s3-store"), "sft").manifest


def local_hub_run(folder: Path, root: Path, monkeypatch) -> str:
    """A local prepare of hf://datasets/<FakeHub.repo> (files downloaded into this process's HF cache), pushed."""
    from tests.fakes import FakeHub, serve_fake_hub

    httpd, url = serve_fake_hub()
    FakeHub.commits = {HUB_SHA: {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
                                 if p.is_file()}}
    FakeHub.refs = {"main": HUB_SHA}
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_CACHE", str(root / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    try:
        home, config = DataHome(root / "hub-home"), prepare.PrepareConfig(shard_rows=SHARD_ROWS)
        for spec in prepare.plan(f"hf://datasets/{FakeHub.repo}", SPLIT, config, home):
            prepare.prepare_shard(spec, home, config)
        return push(home, LocalStore(root / "hub-store"), "sft").manifest
    finally:
        httpd.shutdown()


def test_cluster_runs_publish_what_local_runs_make_despite_a_killed_worker(tmp_path, s3, monkeypatch):
    rows = list(generate_records(SPLIT, 22, 11, 640, 480, 1))
    rows += [bad.with_image(rows[0], bad.truncated_jpeg(), 1), bad.missing_processed_image(rows[1]).record]
    source = tmp_path / "src" / "data.parquet"
    source.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), source, row_group_size=2)
    tsv, responses = write_demo_benchmark(tmp_path / "bench", n=7)
    model = Path(shutil.copytree(ensure_tiny_model(DataHome(tmp_path / "builder")), tmp_path / "bench" / "my-model"))
    local = local_run(source, tsv, responses, model, tmp_path / "local")
    uri, client, _ = s3
    s3_folder = source_with_image_files(tmp_path / "s3-src", SPLIT, n=8)
    upload_folder(client, BUCKET, uri.removeprefix(f"s3://{BUCKET}/"), s3_folder)
    local["s3"] = local_s3_run(uri, tmp_path / "local")

    hub_folder = tmp_path / "hub"
    (hub_folder / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows[:12], schema=SCHEMA), hub_folder / "data" / "train.parquet",
                   row_group_size=2)
    local["hub"] = local_hub_run(hub_folder, tmp_path / "local", monkeypatch)

    work = tmp_path / "cluster"
    work.mkdir()
    plan = {"bin": str(BIN), "repo": str(REPO), "work": str(work), "source": str(source), "split": SPLIT,
            "shard_rows": SHARD_ROWS, "tsv": str(tsv), "responses": str(responses), "model": str(model), "s3_folder": str(s3_folder),
            "s3_uri": uri, "hub_folder": str(hub_folder), "hub_sha": HUB_SHA}
    (work / "plan.json").write_text(json.dumps(plan))
    run = subprocess.run(["unshare", "-n", "-p", "-f", "--kill-child", "--mount-proc", sys.executable,
                          str(Path(__file__).with_name("ray_cluster_run.py")), str(work / "plan.json")],
                         capture_output=True, text=True, timeout=900)
    log = (work / "cluster.log").read_text()[-6000:] if (work / "cluster.log").exists() else ""
    assert run.returncode == 0, f"{run.stderr[-3000:]}\n{log}"
    got = json.loads((work / "results.json").read_text())

    assert got["killed"], "no worker process was caught running a prepare step"
    assert got["after_prepare"] == local["prepared"]  # the same version hash, a killed shard rerun by Ray
    assert got["after_replay"] == local["replayed"]
    assert "samples=" in got["prepare_stderr"] and "rejects=" in got["prepare_stderr"]  # progress, as locally
    lines = got["prepare_shard_lines"]  # a line per shard as locally: samples, rejects, images/s, and the worker
    assert len(lines) == len(prepare.plan(source, SPLIT, prepare.PrepareConfig(shard_rows=SHARD_ROWS)))
    assert all(re.search(r"rows \d+-\d+: \d+ samples, \d+ rejects, \d+ images \(\d+ new\) in", x) for x in lines)
    cluster_eval = query_version(LocalStore(work / "store"), "eval", EVAL_ROWS)[1]
    assert cluster_eval == local["eval"] and [r[5] for r in cluster_eval] == [i % 3 != 0 for i in range(7)]
    assert "4/7 correct (0/3 shards already done)" in got["eval_stdout"]
    assert query_version(LocalStore(work / "store"), "eval", EVAL_TOKENS)[1] == local["eval_tokens"]
    assert got["after_rerun"] == got["after_replay"]  # nothing new to publish
    assert re.search(r"\b0 shards processed, [1-9]\d* already done", got["rerun_output"])  # every shard skipped

    assert got["after_s3_prepare"] == local["s3"], got["s3_output"]  # read by the workers from S3 by range
    gets, size = got["s3_parquet_gets"], got["s3_parquet_size"]
    assert gets and None not in gets  # every GET of the Parquet object (plan and 4 shards) asked for a range
    spans = [int(b) - int(a) + 1 for a, b in (re.fullmatch(r"bytes=(\d+)-(\d+)", g).groups() for g in gets)]
    assert max(spans) < size / 2, (spans, size)  # none of them read the whole object

    assert got["after_hub_prepare"] == local["hub"], got["hub_output"]  # read by the workers from the Hub
    gets, size = got["hub_parquet_gets"], got["hub_parquet_size"]
    assert gets and None not in gets  # planning (the footer) and every shard: by range, at the planned commit
    spans = [int(b) - int(a) + 1 for a, b in (re.fullmatch(r"bytes=(\d+)-(\d+)", g).groups() for g in gets)]
    assert max(spans) < size / 2, (spans, size)
    assert got["driver_only_left"] == []  # the benchmark lay in the driver's own tmpfs only
