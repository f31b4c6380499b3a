"""Dataset versions against a real S3-protocol server: `moto_server` (moto[server]) on 127.0.0.1.

Round trip through the CLI, concurrent publishers racing on one ref (conditional writes decide), an
interrupted push, corrupted and missing objects on pull, multipart transfers, DuckDB querying a version in
place over HTTP.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fakes import VIEW_QUERIES, FailingStore, catalog_rows, make_home
from tests.integration.conftest import BUCKET
from thyme_core import catalog
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.versions.manifest import build_manifest
from thyme_core.versions.pull import load_manifest, pull
from thyme_core.versions.push import plan_push, publish, push, upload_objects
from thyme_core.versions.query import query_version
from thyme_core.versions.refs import versions
from thyme_core.versions.s3 import S3Store
from thyme_core.versions.keys import RefConflict, object_key
from thyme_core.versions.store import open_store

BIN = Path(sys.executable).parent
@pytest.fixture(scope="module")
def source_home(tmp_path_factory):
    return make_home(tmp_path_factory.mktemp("src") / "home")


def thyme(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "thyme"), *map(str, args)], env=env, cwd=REPO, capture_output=True, text=True)


def test_round_trip_through_the_cli(s3, source_home, tmp_path):
    uri, _, env = s3
    out = thyme("data", "push", "sft", "--home", source_home.root, "--store", uri, env=env)
    assert out.returncode == 0, out.stderr
    assert "nothing to push" in thyme("data", "push", "sft", "--home", source_home.root, "--store", uri, env=env).stdout
    listed = thyme("data", "versions", "sft", "--store", uri, env=env)
    assert listed.returncode == 0 and "latest" in listed.stdout and "prepare/image_samples=" in listed.stdout
    out = thyme("data", "pull", "sft", "--home", tmp_path / "pulled", "--store", uri, env=env)
    assert out.returncode == 0, out.stderr
    pulled = DataHome(tmp_path / "pulled")
    assert build_manifest(pulled).sha256 == build_manifest(source_home).sha256
    assert catalog_rows(pulled) == catalog_rows(source_home)


def test_concurrent_publishers_exactly_one_wins(s3, tmp_path):
    uri, _, _ = s3
    homes = [make_home(tmp_path / f"h{i}", seed=10 + i, n=3) for i in range(3)]
    store = open_store(uri)
    for ref_exists in (False, True):  # create (If-None-Match: *), then update (If-Match: etag)
        plans = [plan_push(h, store, "sft") for h in homes]  # all read the same ref state
        for p in plans:
            upload_objects(p)
        barrier, outcomes = threading.Barrier(len(plans)), []

        def race(plan):
            barrier.wait()
            try:
                publish(plan)
                outcomes.append("won")
            except RefConflict as exc:
                outcomes.append(str(exc))

        threads = [threading.Thread(target=race, args=(p,)) for p in plans]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert outcomes.count("won") == 1, outcomes
        assert all("by another publisher" in o and "run the push again" in o for o in outcomes if o != "won")
    assert len(versions(store, "sft")) == 2  # one winner per round; no silent overwrite


def test_a_conflicting_cli_push_exits_with_a_clear_error(s3, source_home, tmp_path):
    uri, _, env = s3
    store = open_store(uri)
    stale = plan_push(make_home(tmp_path / "other", seed=20, n=3), store, "sft")  # reads: no ref yet
    assert thyme("data", "push", "sft", "--home", source_home.root, "--store", uri, env=env).returncode == 0
    with pytest.raises(RefConflict, match="created by another publisher"):
        publish(stale, upload_objects(stale))


def test_interrupted_push_publishes_nothing_and_a_retry_completes(s3, source_home, tmp_path):
    uri, _, _ = s3
    store = open_store(uri)
    with pytest.raises(ConnectionError):
        push(source_home, FailingStore(store, fail_after=7), "sft")
    assert versions(store, "sft") == [] and store.list_keys("manifests/") == []
    with pytest.raises(ThymeError, match="no version"):
        pull(store, "sft", DataHome(tmp_path / "pulled"))
    retry = push(source_home, store, "sft")
    assert retry.uploaded == retry.objects - 7
    assert pull(store, "sft", DataHome(tmp_path / "pulled")).manifest == retry.manifest


def test_killed_cli_push_leaves_no_version(s3, source_home, tmp_path):
    uri, _, env = s3
    proc = subprocess.Popen([str(BIN / "thyme"), "data", "push", "sft", "--home", str(source_home.root),
                             "--store", uri], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = open_store(uri)
    deadline = time.time() + 30
    while not store.list_keys("objects/") and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    if proc.returncode == 0:
        pytest.skip("the push finished before it could be killed")
    expected = build_manifest(source_home).sha256
    listed = versions(store, "sft")
    # Killed before its ref was written: no version. Killed after (a small push can publish within the poll
    # interval and die in its exit): then only the whole version, every object of its manifest there.
    assert listed == [] or ([v["manifest"] for v in listed] == [expected]
                            and pull(store, "sft", DataHome(tmp_path / "pulled")).manifest == expected)
    assert push(source_home, store, "sft").manifest == expected


def test_corrupted_object_on_pull_is_an_error_and_nothing_is_visible(s3, source_home, tmp_path):
    uri, client, _ = s3
    store = open_store(uri)
    v = push(source_home, store, "sft")
    files = load_manifest(store, "sft")[2].files
    victim = next(f for f in files if f.path.endswith("image_samples.parquet") and "_schema" not in f.path)
    key = f"{store.prefix}{object_key(victim.sha256)}"
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=key, Body=body[:-4] + b"XXXX")
    target = DataHome(tmp_path / "pulled")
    with pytest.raises(ThymeError, match=f"{victim.sha256} \\({victim.path}\\) is corrupted"):
        pull(store, "sft", target)
    assert not list(target.shards_dir.iterdir()) and not list(target.images_dir.iterdir())
    client.delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(ThymeError, match=f"is missing: it holds {victim.path}"):
        pull(store, f"sft@{v.manifest}", target)
    assert not list(target.shards_dir.iterdir()) and not list(target.tmp_dir.iterdir())


def test_query_in_place_without_download(s3, source_home, tmp_path):
    uri, _, env = s3
    store = open_store(uri)
    push(source_home, store, "sft")
    for name, sql in VIEW_QUERIES.items():
        assert query_version(store, "sft", sql)[1] == catalog.query(source_home, sql)[1], name
    out = thyme("data", "query", "sft", "counts_by_split", "--store", uri, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split()[0] == "split" and "2round" in out.stdout


def test_multipart_objects_round_trip(s3, tmp_path):
    uri, client, _ = s3
    store = S3Store(uri, multipart_threshold=5 << 20)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 << 20))
    sha = hashlib.sha256(big.read_bytes()).hexdigest()
    store.put_file(object_key(sha), big, sha)
    etag = client.head_object(Bucket=BUCKET, Key=store.prefix + object_key(sha))["ETag"]
    assert "-" in etag  # a multipart upload's etag is "<md5 of part md5s>-<parts>"
    store.download(object_key(sha), tmp_path / "back.bin")
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == sha


def test_missing_bucket_is_a_clear_error_at_start(s3):
    with pytest.raises(ThymeError, match="bucket 'no-such-bucket' is not usable"):
        open_store("s3://no-such-bucket/x")
