"""The cluster steps without Ray (thyme_core/cluster/stored.py and publish.py, called in this process): a run
whose shards go straight into the store publishes the version a local run's push makes, byte for byte; a
finished shard is known by its marker and never read again; a failed attempt leaves no marker."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fakes import eval_on_workers
from thyme_core import prepare, replay
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.cluster import publish as cluster
from thyme_core.cluster import stored
from thyme_core.cluster.engine import Resources
from thyme_core.synth import bad, generate_records
from thyme_core.synth.writer import SCHEMA
from thyme_core.versions.manifest import build_manifest
from thyme_core.versions.push import push
from thyme_core.versions.store import LocalStore

SPLIT = "2round"
CONFIG = prepare.PrepareConfig(shard_rows=4)
REPLAY = replay.ReplayConfig(isolation="none")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """10 samples and two damaged records (reason codes), in row groups of 2: a shard per row group (a small file is cut finer
    than shard_rows so every core stays busy)."""
    rows = list(generate_records(SPLIT, 10, 7, 256, 192, 1))
    rows += [bad.with_image(rows[0], bad.truncated_jpeg(), 1), bad.missing_processed_image(rows[1]).record]
    path = tmp_path_factory.mktemp("src") / "data.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path, row_group_size=2)
    return path


@pytest.fixture(scope="module")
def local(source, tmp_path_factory):
    """The local run: prepare and replay in one home, pushed after each stage: (prepare hash, replay hash)."""
    home = DataHome(tmp_path_factory.mktemp("local") / "home")
    store = LocalStore(tmp_path_factory.mktemp("local-store"))
    for spec in prepare.plan(source, SPLIT, CONFIG, home):
        prepare.prepare_shard(spec, home, CONFIG)
    prepared = push(home, store, "sft").manifest
    for shard in replay.prepared_shards(home, SPLIT):
        replay.replay_shard(Path(shard), home, REPLAY)
    return prepared, push(home, store, "sft").manifest


def test_stored_shards_publish_the_version_a_local_push_makes(source, local, tmp_path):
    store, home = LocalStore(tmp_path / "store"), DataHome(tmp_path / "driver")
    specs = prepare.plan(source, SPLIT, CONFIG)
    shards = [stored.prepare_step(spec, store.uri, CONFIG) for spec in specs]
    assert len(shards) == len(specs) > 1 and not any(s.reused for s in shards)
    out = cluster.publish_shards(store, "sft", shards, home)
    assert out.manifest == local[0]
    assert out.home_updated and build_manifest(home).sha256 == local[0]  # the driver's home pulled it

    inputs = [(k, cluster.shard_parts(store, "sft", "prepare", k)) for k in cluster.prepared_shards(store, "sft", SPLIT)]
    assert len(inputs) == len(specs) and all(len(parts) == 6 for _, parts in inputs)
    replayed = [stored.replay_step(k, parts, store.uri, REPLAY) for k, parts in inputs]
    assert sum(s.result.blocks for s in replayed) > 0
    assert cluster.publish_shards(store, "sft", replayed, home).manifest == local[1]


def test_a_finished_shard_is_known_by_its_marker_and_never_read_again(source, tmp_path):
    store = LocalStore(tmp_path / "store")
    copy = tmp_path / "copy.parquet"
    copy.write_bytes(source.read_bytes())
    spec = prepare.plan(copy, SPLIT, CONFIG)[0]
    first = stored.prepare_step(spec, store.uri, CONFIG)
    copy.unlink()  # a rerun that read the source now would fail
    again = stored.prepare_step(spec, store.uri, CONFIG)
    assert again.reused and again.entries == first.entries and again.result.summary == first.result.summary
    # the driver does not even reach the cluster for it (no Ray is running at this address)
    skipped = cluster.run_shard("ray://127.0.0.1:1", store, "prepare", spec.key, stored.prepare_step, (), Resources())
    assert skipped.reused and skipped.entries == first.entries


def test_a_failed_attempt_leaves_no_marker_and_the_next_one_completes(source, tmp_path, monkeypatch):
    store = LocalStore(tmp_path / "store")
    monkeypatch.setenv(stored.SCRATCH_ENV, str(tmp_path / "scratch"))
    spec = prepare.plan(source, SPLIT, CONFIG)[0]

    def dies_after_its_work(home):
        prepare.prepare_shard(spec, home, CONFIG)
        raise ThymeError("worker lost")

    with pytest.raises(ThymeError):
        stored.run_stored(store.uri, "prepare", spec.key, dies_after_its_work)
    assert stored.read_marker(store, "prepare", spec.key) is None
    assert not list((tmp_path / "scratch" / "thyme-shards").iterdir())  # its scratch home is gone
    done = stored.prepare_step(spec, store.uri, CONFIG)
    assert not done.reused and stored.read_marker(store, "prepare", spec.key).entries == done.entries


def test_without_a_cluster_address_runs_stay_local(monkeypatch):
    from thyme_core.cluster.engine import ADDRESS_ENV, address

    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    assert address("") is None and address(None) is None
    monkeypatch.setenv(ADDRESS_ENV, "ray://head:10001")
    assert address("") == "ray://head:10001" and address("ray://other:1") == "ray://other:1"


def test_a_home_left_as_it_was_still_gets_the_full_report_from_the_version(source, tmp_path):
    """The driver's home holds other work, so the version is not pulled: the run's report (per-shard lines and
    the catalog sections) comes from the published version queried in place, equal to a pulled home's."""
    from thyme_core.prepare.report import build_report, describe_shard
    from thyme_core.versions.pull import pull
    from thyme_core.versions.query import version_querier

    store, busy = LocalStore(tmp_path / "store"), DataHome(tmp_path / "busy")
    for spec in prepare.plan(source, "other", CONFIG, busy):  # the home's own work
        prepare.prepare_shard(spec, busy, CONFIG)
    before = build_manifest(busy).sha256
    shards = [stored.prepare_step(spec, store.uri, CONFIG) for spec in prepare.plan(source, SPLIT, CONFIG)]
    out = cluster.publish_shards(store, "sft", shards, busy)
    assert not out.home_updated and build_manifest(busy).sha256 == before
    results = [s.result for s in shards]
    assert all(describe_shard(r).endswith("images/s") for r in results)  # a worker's run facts come back
    in_place = build_report(version_querier(store, f"sft@{out.manifest}"), SPLIT, results, 2.0)
    pulled = DataHome(tmp_path / "pulled")
    pull(store, f"sft@{out.manifest}", pulled)
    assert in_place == build_report(pulled, SPLIT, results, 2.0)
    assert in_place.rejects == 2 and {r[0] for r in in_place.rejects_by_reason} == {SPLIT}  # not the busy home's
    assert "| 2round |" in in_place.markdown()


def test_an_eval_shard_reads_the_benchmark_and_responses_the_driver_shipped_through_the_store(tmp_path, monkeypatch):
    """No path of the driver is visible to the worker (its folder is renamed before the shards run): the TSV and
    the response file come from the store, and the results equal a local evaluation's; a shipped object that
    does not match its hash is refused."""
    from thyme_core import catalog
    from thyme_core.agent.config import AgentConfig
    from thyme_core.agent.infer import BackendSpec
    from thyme_core.cluster import shipped
    from thyme_core.eval import evaluate
    from thyme_core.synth.benchmark import write_demo_benchmark
    from thyme_core.versions.keys import object_key

    rows_sql = ("SELECT index, category, prediction, choice, answer, correct, stop_reason FROM eval_results "
                "ORDER BY index::INT")
    tsv, responses = write_demo_benchmark(tmp_path / "driver", n=5)
    spec, agent = BackendSpec("scripted", response_file=str(responses)), AgentConfig(isolation="none")
    shards = evaluate.plan(tsv, spec, agent, shard_rows=2)
    local = DataHome(tmp_path / "local")
    for shard in shards:
        evaluate.eval_shard(shard, local, spec, agent)
    store = LocalStore(tmp_path / "store")
    files = shipped.ship_eval_files(store, str(tsv), str(responses))
    (tmp_path / "driver").rename(tmp_path / "elsewhere")
    monkeypatch.setenv(stored.SCRATCH_ENV, str(tmp_path / "worker"))
    out, rows = eval_on_workers(store, shards, spec, agent, files, tmp_path / "driver-home", rows_sql)
    assert len(rows) == 5 and rows == catalog.query(local, rows_sql)[1]
    assert sum(s.result.correct for s in out) == sum(r[5] for r in rows) > 0

    store.put_bytes(object_key(files.tsv.sha256), b"index\tquestion\n0\tnot the benchmark\n")
    monkeypatch.setenv(stored.SCRATCH_ENV, str(tmp_path / "another-node"))
    with pytest.raises(ThymeError, match="corrupted"):
        stored.eval_step(evaluate.EvalShard(shards[0].run_id, shards[0].benchmark, shards[0].tsv, 0, 1), spec, agent,
                         store.uri, None, files)
