"""Dataset versions on the local-folder store: one test per guarantee of push, pull, refs and in-place query.

The same guarantees against a real S3-protocol server are in tests/integration/test_s3_versions.py; both use
`make_home` and `FailingStore` from tests/fakes.py.
"""

from __future__ import annotations


import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fakes import CONFIG, VIEW_QUERIES, FailingStore, catalog_rows, make_home
from thyme_core import catalog, prepare
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.synth import generate_records
from thyme_core.synth.writer import SCHEMA
from thyme_core.versions import refs
from thyme_core.versions.manifest import build_manifest
from thyme_core.versions.pull import load_manifest, pull
from thyme_core.versions.push import plan_push, publish, push, upload_objects
from thyme_core.versions.query import query_version
from thyme_core.versions.refs import versions
from thyme_core.versions.keys import RefConflict, object_key
from thyme_core.versions.store import open_store

@pytest.fixture(scope="module")
def source_home(tmp_path_factory):
    return make_home(tmp_path_factory.mktemp("src") / "home")


@pytest.fixture
def store(tmp_path):
    return open_store(str(tmp_path / "store"))


def test_round_trip_gives_the_same_catalog(source_home, store, tmp_path):
    pushed = push(source_home, store, "sft")
    got = pull(store, "sft", DataHome(tmp_path / "pulled"))
    assert got.manifest == pushed.manifest and not got.unchanged
    assert build_manifest(DataHome(tmp_path / "pulled")).sha256 == pushed.manifest  # byte for byte
    assert catalog_rows(DataHome(tmp_path / "pulled")) == catalog_rows(source_home)
    assert not list((tmp_path / "pulled" / "tmp").iterdir())  # no staging left behind


def test_version_holds_parts_and_images_not_the_duckdb_file(source_home, store):
    manifest = build_manifest(source_home)
    paths = [f.path for f in manifest.files]
    assert any(p.startswith("images/") for p in paths) and any(p.startswith("shards/prepare/") for p in paths)
    assert "shards/prepare/_schema/images.parquet" in paths  # every view resolves on a pulled home
    assert not [p for p in paths if not p.startswith(("images/", "shards/"))]  # no catalog.duckdb, tmp/, sources
    samples = next(f for f in manifest.files if f.path.endswith("image_samples.parquet") and "_schema" not in f.path)
    assert samples.rows > 0 and ["question", "string"] in samples.schema


def test_same_content_same_hash_and_a_repush_uploads_nothing(source_home, store):
    first = push(source_home, store, "a")
    assert first.uploaded == first.objects
    again = push(source_home, store, "a")
    assert again.unchanged and again.manifest == first.manifest
    other = push(source_home, store, "b", tag="v1")  # another name and tag: same manifest, no upload
    assert other.manifest == first.manifest and other.uploaded == 0


def test_new_data_uploads_only_new_objects_and_history_keeps_both(tmp_path, store):
    home = make_home(tmp_path / "home")
    v1 = push(home, store, "sft")
    make_home(tmp_path / "home", split="computation", n=4)
    v2 = push(home, store, "sft")
    assert v2.manifest != v1.manifest and 0 < v2.uploaded < v2.objects
    listed = versions(store, "sft")
    assert [e["manifest"] for e in listed] == [v2.manifest, v1.manifest] and listed[0]["current"]
    assert listed[0]["rows"]["prepare/text_samples"] > listed[1]["rows"]["prepare/text_samples"] == 0
    old = pull(store, f"sft@{v1.manifest[:10]}", DataHome(tmp_path / "old"))  # a hash prefix from the history
    assert old.manifest == v1.manifest
    assert build_manifest(DataHome(tmp_path / "old")).sha256 == v1.manifest


def test_concurrent_publishers_the_later_one_gets_a_conflict(tmp_path, store):
    home_a, home_b = make_home(tmp_path / "a", seed=1), make_home(tmp_path / "b", seed=2)
    plan_a, plan_b = plan_push(home_a, store, "sft"), plan_push(home_b, store, "sft")  # both see no ref
    publish(plan_b, upload_objects(plan_b))
    upload_objects(plan_a)
    with pytest.raises(RefConflict, match="created by another publisher.*run the push again"):
        publish(plan_a)
    assert refs.read(store, "sft", "latest")[0].manifest == plan_b.manifest.sha256  # B's version stands
    retry = push(home_a, store, "sft")
    assert retry.uploaded == 0  # A's objects went up before the conflict
    assert [e["manifest"] for e in versions(store, "sft")] == [retry.manifest, plan_b.manifest.sha256]


def test_conflict_on_an_existing_ref_too(tmp_path, store, source_home):
    push(source_home, store, "sft")
    home_b = make_home(tmp_path / "b", seed=3)
    plan_a, plan_b = plan_push(home_b, store, "sft"), plan_push(home_b, store, "sft")
    publish(plan_b)
    with pytest.raises(RefConflict, match="moved by another publisher"):
        publish(plan_a)
    assert len(versions(store, "sft")) == 2


def test_interrupted_push_publishes_nothing_and_a_retry_completes(source_home, store, tmp_path):
    with pytest.raises(ConnectionError):
        push(source_home, FailingStore(store, fail_after=5), "sft")
    assert versions(store, "sft") == [] and not store.list_keys("manifests/")
    with pytest.raises(ThymeError, match="no version 'sft'"):
        pull(store, "sft", DataHome(tmp_path / "pulled"))
    retry = push(source_home, store, "sft")
    assert retry.uploaded == retry.objects - 5


def _corrupt_one_parquet_object(store, manifest_sha) -> str:
    entry = next(f for f in manifest_files(store, manifest_sha) if f.path.endswith("samples.parquet"))
    path = store.root / object_key(entry.sha256)
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    return entry.path


def manifest_files(store, sha):
    return load_manifest(store, f"x@{sha}")[2].files


def test_corrupted_object_is_an_error_and_nothing_is_visible(source_home, store, tmp_path):
    v = push(source_home, store, "sft")
    bad_path = _corrupt_one_parquet_object(store, v.manifest)
    target = DataHome(tmp_path / "pulled")
    with pytest.raises(ThymeError, match=f"is corrupted.*{bad_path}|{bad_path}.*is corrupted"):
        pull(store, "sft", target)
    assert not list(target.shards_dir.iterdir()) and not list(target.images_dir.iterdir())
    assert not list(target.tmp_dir.iterdir())


def test_corrupted_object_leaves_a_replaced_home_as_it_was(tmp_path, store):
    home = make_home(tmp_path / "home", seed=4)
    before = build_manifest(home).sha256
    v = push(make_home(tmp_path / "other", seed=5), store, "sft")
    _corrupt_one_parquet_object(store, v.manifest)
    with pytest.raises(ThymeError, match="is corrupted"):
        pull(store, "sft", home, replace=True)
    assert build_manifest(home).sha256 == before


def test_missing_object_is_an_error(source_home, store, tmp_path):
    v = push(source_home, store, "sft")
    victim = manifest_files(store, v.manifest)[-1]
    (store.root / object_key(victim.sha256)).unlink()
    with pytest.raises(ThymeError, match=f"is missing: it holds {victim.path}; nothing was pulled"):
        pull(store, "sft", DataHome(tmp_path / "pulled"))
    assert not list(DataHome(tmp_path / "pulled").shards_dir.iterdir())


def test_pull_over_another_catalog_needs_replace_and_then_matches_exactly(tmp_path, store, source_home):
    v = push(source_home, store, "sft")
    home = make_home(tmp_path / "home", split="computation", n=4, seed=6)
    with pytest.raises(ThymeError, match="already holds a different catalog.*--replace"):
        pull(store, "sft", home)
    pull(store, "sft", home, replace=True)
    assert build_manifest(home).sha256 == v.manifest  # old shards and images outside the version are gone
    assert catalog_rows(home) == catalog_rows(source_home)
    assert pull(store, "sft", home).unchanged  # pulling the version it holds is a no-op


def test_query_in_place_has_the_local_views(source_home, store):
    push(source_home, store, "sft")
    for name, sql in VIEW_QUERIES.items():
        assert query_version(store, "sft", sql)[1] == catalog.query(source_home, sql)[1], name
    from tests.conftest import named_query_params

    for name in catalog.named_queries():
        columns, rows = query_version(store, "sft", name, named_query_params(name))
        local = catalog.named(source_home, name, named_query_params(name))[1]
        if name == "prepare_runs":  # run facts (images written, timings) are local to the home that ran
            keep = [i for i, c in enumerate(columns) if c not in ("images_written", "images_per_cpu_second")]
            assert all(r[i] is None for r in rows for i in range(len(columns)) if i not in keep)
            rows, local = ([tuple(r[i] for i in keep) for r in rs] for rs in (rows, local))
        assert rows == local, name


def test_version_specs(source_home, store):
    v = push(source_home, store, "sft", tag="v1")
    assert refs.resolve(store, "sft@v1") == ("sft", v.manifest)
    assert refs.resolve(store, f"sft@{v.manifest}") == ("sft", v.manifest)
    with pytest.raises(ThymeError, match=r"no version 'sft'.*tags of sft: v1"):
        refs.resolve(store, "sft")  # no `latest` was pushed
    with pytest.raises(ThymeError, match="matches no version"):
        refs.resolve(store, "sft@deadbeef")
    with pytest.raises(ThymeError, match="use letters"):
        push(source_home, store, "a/b")


def test_an_image_that_does_not_match_its_name_is_not_pushed(tmp_path, store):
    home = make_home(tmp_path / "home", seed=7)
    image = next(home.images_dir.rglob("*.jpg"))
    image.write_bytes(image.read_bytes() + b"x")
    with pytest.raises(ThymeError, match="does not match its name"):
        push(home, store, "sft")
    assert versions(store, "sft") == []


def test_s3_store_without_credentials_fails_at_start(monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ThymeError, match="no AWS credentials found"):
        open_store("s3://bucket/prefix")
    monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(ThymeError, match="AWS configuration.*nope"):
        open_store("s3://bucket/prefix")


def test_cli_push_versions_pull_query(source_home, tmp_path, capsys):
    from thyme_cli.main import main

    store = str(tmp_path / "store")
    assert main(["data", "push", "sft", "--home", str(source_home.root), "--store", store, "--tag", "v1"]) == 0
    assert main(["data", "versions", "sft", "--store", store]) == 0
    assert main(["data", "--home", str(tmp_path / "p"), "pull", "sft@v1", "--store", store]) == 0
    assert main(["data", "query", "sft@v1", "SELECT count(*) FROM sft_samples", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "sft/v1 -> " in out and "v1" in out and "all checksums verified" in out
    assert (tmp_path / "p" / "catalog.duckdb").exists()
    assert main(["data", "pull", "sft@nope", "--home", str(tmp_path / "q"), "--store", store]) == 2
    assert "no version 'sft@nope'" in capsys.readouterr().err


def test_large_versions_check_the_store_by_listing(source_home, store, monkeypatch):
    monkeypatch.setattr("thyme_core.versions.push.LIST_ABOVE", 1)  # as for a version of thousands of images
    first = push(source_home, store, "a")
    assert first.uploaded == first.objects
    assert push(source_home, store, "b").uploaded == 0


def test_two_independent_prepares_of_one_file_push_the_same_version(tmp_path):
    import shutil

    source = tmp_path / "one.parquet"
    pq.write_table(pa.Table.from_pylist(list(generate_records("2round", 6, 0, 160, 120, 1)), schema=SCHEMA), source)
    clean, rerun = DataHome(tmp_path / "clean").ensure(), DataHome(tmp_path / "rerun").ensure()
    for spec in prepare.plan(source, "2round", CONFIG, clean):
        prepare.prepare_shard(spec, clean, CONFIG)
    shutil.copytree(clean.images_dir, rerun.images_dir, dirs_exist_ok=True)  # what a killed run left behind
    results = [prepare.prepare_shard(spec, rerun, CONFIG) for spec in prepare.plan(source, "2round", CONFIG, rerun)]
    assert sum(r.run.images_written for r in results) == 0  # the run facts differ (and so do timings, host)...
    store = open_store(str(tmp_path / "store"))
    a, b = push(clean, store, "clean"), push(rerun, store, "rerun")
    assert a.manifest == b.manifest  # ...but the content, and so the version, is the same
    pulled = DataHome(tmp_path / "pulled")
    pull(store, "rerun", pulled)
    assert catalog.query(pulled, "SELECT count(*) FROM prepare_shard_runs")[1] == [(0,)]  # local facts stay local
    assert catalog_rows(pulled) == catalog_rows(clean)
