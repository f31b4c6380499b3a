"""`thyme prepare hf://datasets/OWNER/NAME[@REVISION][/PATH]` (prepare/hub.py), without a reachable hub.

Offline: a real HF cache layout on disk (datasets--OWNER--NAME/{blobs, snapshots/<sha>, refs/main}) holding a
`datasets`-written Parquet export with Image features whose images are files of the repo, read with
HF_HUB_OFFLINE=1 through hf_hub_download. Online: a small HTTP server on 127.0.0.1 answering the two hub
endpoints huggingface_hub calls (/api/datasets/{repo}/revision/{rev} and /datasets/{repo}/resolve/{rev}/{path},
HEAD and GET), reached through HF_ENDPOINT with HF_TOKEN sent. Checked: the commit sha is in every shard
key (a moved branch gives new shards, a pinned sha the old ones), resolving downloads no data file and each
file is fetched when its shards are planned, images named relative to the data file come from the repo.
"""

import hashlib
import io
import json
import random

import pytest
from PIL import Image

from thyme_core import catalog, prepare
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.prepare import hub
from tests.fakes import FakeHub, serve_fake_hub

datasets = pytest.importorskip("datasets")
CONFIG = prepare.PrepareConfig(shard_rows=2)
REPO = "thyme-org/thyme-mini"
SHA1, SHA2 = "1" * 40, "2" * 40


def png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (80, 60), colour).save(buf, "PNG")
    return buf.getvalue()


def repo_files(tmp_path, n_rows: int, colour=(200, 0, 0), filler: int = 0) -> dict[str, bytes]:
    """The files of a dataset repo: data/train.parquet written by `datasets` (an Image sequence column whose
    images are repo files named relative to it: {bytes: None, path: "../images/i.png"}) and the images."""
    rows, files = [], {}
    for i in range(n_rows):
        files[f"images/{i}.png"] = png((colour[0], colour[1], i * 20))
        rows.append({"image": [{"bytes": None, "path": f"../images/{i}.png"}],
                     "question": f"<image>\nWhat colour is square {i}?\nA. red\nB. blue" + _noise(filler, i),
                     "response": "<think>It is red.</think>\n<answer>A</answer>"})
    features = datasets.Features({"image": datasets.Sequence(datasets.Image(decode=False)),
                                  "question": datasets.Value("string"), "response": datasets.Value("string")})
    out = tmp_path / f"export-{colour}.parquet"
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(out), batch_size=2)  # row groups of 2
    files["data/train.parquet"] = out.read_bytes()
    files["README.md"] = b"# a dataset card, not data"
    return files


def _noise(n: int, seed: int) -> str:
    """n characters of incompressible text (a column as large as real rows' base64 images)."""
    return "" if not n else "\n" + random.Random(seed).randbytes(n // 2).hex()


def write_cache(cache, sha: str, files: dict[str, bytes], ref: str = "main"):
    """The layout `huggingface-cli download` leaves: blobs by etag, snapshot files as symlinks to them."""
    repo = cache / f"datasets--{REPO.replace('/', '--')}"
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / sha / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(sha)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _prepare(home, uri):
    specs = prepare.plan(uri, "hub", CONFIG, home)
    for spec in specs:
        prepare.prepare_shard(spec, home, CONFIG)
    return specs


def test_parse_rejects_other_forms():
    with pytest.raises(ThymeError, match="expected hf://datasets/OWNER/NAME"):
        hub.parse("hf://models/org/name")


def test_offline_cache_is_read_and_the_sha_keys_every_shard(home, tmp_path, offline_cache):
    write_cache(offline_cache, SHA1, repo_files(tmp_path, 5))
    specs = _prepare(home, f"hf://datasets/{REPO}")
    assert len(specs) == 3 and {s.display_name for s in specs} == {"data/train.parquet"}
    ranged = prepare.plan_hub_ranges(prepare.resolve_hub(f"hf://datasets/{REPO}"), "hub", CONFIG)
    assert [s.key for s in ranged] == [s.key for s in specs]  # a cluster plan from an offline driver's cache
    con = catalog.read(home)
    assert con.execute("SELECT count(*), min(source_file) FROM sft_samples").fetchone() == (5, "data/train.parquet")
    assert con.execute("SELECT count(*) FROM rejects").fetchone()[0] == 0
    stored = {r[0] for r in con.execute("SELECT image_sha256[1] FROM sft_samples").fetchall()}
    assert hashlib.sha256(png((200, 0, 0))).hexdigest() in stored  # the repo's image file, by content
    # main moves to a new commit (same content): new keys, so a catalog never mixes commits unknowingly
    write_cache(offline_cache, SHA2, repo_files(tmp_path, 5))
    moved = prepare.plan(f"hf://datasets/{REPO}", "hub", CONFIG)
    assert not {s.key for s in moved} & {s.key for s in specs}
    pinned = prepare.plan(f"hf://datasets/{REPO}@{SHA1}/data", "hub", CONFIG)
    assert [s.key for s in pinned] == [s.key for s in specs]
    with pytest.raises(ThymeError, match="not in the local HF cache"):
        prepare.plan(f"hf://datasets/{REPO}@v9", "hub", CONFIG)
    with pytest.raises(ThymeError, match="no .parquet or .jsonl files"):
        prepare.plan(f"hf://datasets/{REPO}/nothing-here", "hub", CONFIG)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    httpd, url = serve_fake_hub()
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "fresh-cache"))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield FakeHub
    httpd.shutdown()


def test_online_resolves_fetches_file_by_file_and_sends_the_token(home, tmp_path, fake_hub):
    fake_hub.commits = {SHA1: repo_files(tmp_path, 3)}
    fake_hub.refs = {"main": SHA1}
    snapshot = prepare.resolve_hub(f"hf://datasets/{REPO}", home)
    assert snapshot.sha == SHA1 and snapshot.files == ("data/train.parquet",)
    assert not [p for _, p, _, _ in fake_hub.log if "/resolve/" in p]  # resolving downloads no data file
    specs = prepare.plan_hub_file(snapshot, "data/train.parquet", "hub", CONFIG)
    fetched = [p for m, p, _, _ in fake_hub.log if "/resolve/" in p and m == "GET"]
    assert fetched == [f"/datasets/{REPO}/resolve/{SHA1}/data/train.parquet"]  # that one file, at the sha
    assert {a for _, _, a, _ in fake_hub.log} == {"Bearer hf_test_token"}
    for spec in specs:
        prepare.prepare_shard(spec, home, CONFIG)
    _, rows = catalog.query(home, "SELECT count(*) FROM sft_samples")
    assert rows == [(3,)]
    images = sorted(p for m, p, _, _ in fake_hub.log if m == "GET" and "/images/" in p)
    assert images == [f"/datasets/{REPO}/resolve/{SHA1}/images/{i}.png" for i in range(3)]  # fetched on demand
    # offline afterwards: the same URI reads what the online run left in the cache, same keys
    import os
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        assert [s.key for s in prepare.plan(f"hf://datasets/{REPO}", "hub", CONFIG)] == [s.key for s in specs]
    finally:
        del os.environ["HF_HUB_OFFLINE"]
    with pytest.raises(ThymeError, match="no revision 'v9'"):
        prepare.resolve_hub(f"hf://datasets/{REPO}@v9")


# ---- a cluster's way (hub_range.py): planned from footers, each shard read by range at the planned commit,
# by a worker that shares no HF cache and no HF_ENDPOINT with the driver (stored.prepare_step, as on Ray).

def jsonl_file(n_rows: int) -> bytes:
    """A small non-LFS JSONL file of the repo naming its images relative to itself (hashed once when planned)."""
    return b"".join(json.dumps({"image": [f"../images/{i}.png"], "question": f"<image>\nSquare {i}?\nA. red\nB. blue",
                                "response": "<answer>A</answer>"}).encode() + b"\n" for i in range(n_rows))


def as_worker(monkeypatch, tmp_path, name: str, **env):
    """This process as a fresh cluster worker: its own empty HF cache, no HF_ENDPOINT, its own token."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / f"{name}-hf-cache"))
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def test_a_cluster_run_reads_by_range_and_publishes_what_a_local_run_pushes(home, tmp_path, fake_hub, monkeypatch):
    from thyme_core.cluster import publish as cluster, stored
    from thyme_core.versions.push import push
    from thyme_core.versions.store import LocalStore

    files = repo_files(tmp_path, 5, filler=60_000)  # ~300 kB: more than pyarrow's 64 KiB footer read
    files["data/more.jsonl"] = jsonl_file(3)
    fake_hub.commits, fake_hub.refs = {SHA1: files}, {"main": SHA1}
    snapshot = prepare.resolve_hub(f"hf://datasets/{REPO}")
    local = [s for name in snapshot.files for s in prepare.plan_hub_file(snapshot, name, "hub", CONFIG)]
    for spec in local:
        prepare.prepare_shard(spec, home, CONFIG)
    local_version = push(home, LocalStore(tmp_path / "local-store"), "sft").manifest

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "driver-hf-cache"))  # the driver downloads nothing
    fake_hub.log.clear()
    specs = prepare.plan_hub_ranges(snapshot, "hub", CONFIG)
    assert [s.key for s in specs] == [s.key for s in local]  # same content sha256, same salt: same keys
    parquet = [(m, r) for m, p, _, r in fake_hub.log if p.endswith("/data/train.parquet")]
    assert parquet and all(m == "GET" and r for m, r in parquet)  # the footer by range, never the whole file
    read = sum(int(r[6:].split("-")[1]) - int(r[6:].split("-")[0]) + 1 for _, r in parquet)
    assert read < len(files["data/train.parquet"]) / 3

    as_worker(monkeypatch, tmp_path, "worker", HF_TOKEN="hf_test_token")
    fake_hub.log.clear()
    store = LocalStore(tmp_path / "store")
    shards = [stored.prepare_step(spec, store.uri, CONFIG) for spec in specs]
    out = cluster.publish_shards(store, "sft", shards, DataHome(tmp_path / "driver"))
    assert out.manifest == local_version
    gets = [(p, r) for m, p, _, r in fake_hub.log if m == "GET" and "/data/" in p]
    assert all(f"/resolve/{SHA1}/" in p for p, _ in gets) and all(r for p, r in gets if p.endswith(".parquet"))
    assert {a for *_, a, _ in fake_hub.log} == {"Bearer hf_test_token"}  # the worker's own token


def test_a_file_rewritten_at_a_later_commit_is_never_mixed_in(home, tmp_path, fake_hub, monkeypatch):
    """Planned at main = SHA1; main then moves to SHA2, where the file holds other rows: the shards still read
    SHA1's bytes (the resolve URL names the commit), and planning again gives other keys."""
    from thyme_core.cluster import stored
    from thyme_core.versions.store import LocalStore

    fake_hub.commits, fake_hub.refs = {SHA1: repo_files(tmp_path, 4)}, {"main": SHA1}
    specs = prepare.plan_hub_ranges(prepare.resolve_hub(f"hf://datasets/{REPO}"), "hub", CONFIG)
    fake_hub.commits[SHA2] = repo_files(tmp_path, 6, colour=(0, 0, 200))
    fake_hub.refs["main"] = SHA2
    url = hub.endpoint()
    as_worker(monkeypatch, tmp_path, "worker")
    shards = [stored.prepare_step(spec, LocalStore(tmp_path / "store").uri, CONFIG) for spec in specs]
    assert sum(s.result.summary.samples_image for s in shards) == 4  # SHA1's rows, not SHA2's 6
    stored_images = {e.sha256 for s in shards for e in s.entries if e.path.startswith("images/")}
    assert hashlib.sha256(png((200, 0, 0))).hexdigest() in stored_images
    assert hashlib.sha256(png((0, 0, 200))).hexdigest() not in stored_images
    monkeypatch.setenv("HF_ENDPOINT", url)  # the driver again
    again = prepare.plan_hub_ranges(prepare.resolve_hub(f"hf://datasets/{REPO}"), "hub", CONFIG)
    assert not {s.key for s in again} & {s.key for s in specs}


def test_a_worker_that_cannot_read_the_file_says_why(tmp_path, fake_hub, monkeypatch):
    from thyme_core.prepare import source

    fake_hub.commits, fake_hub.refs = {SHA1: repo_files(tmp_path, 2)}, {"main": SHA1}
    spec = prepare.plan_hub_ranges(prepare.resolve_hub(f"hf://datasets/{REPO}"), "hub", CONFIG)[0]
    fake_hub.token = "hf_test_token"
    as_worker(monkeypatch, tmp_path, "tokenless")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(ThymeError, match="access denied.*set HF_TOKEN on the workers"):
        list(source.read_shard(spec))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    del fake_hub.commits[SHA1]["data/train.parquet"]  # gone from the server after planning
    with pytest.raises(ThymeError, match=f"@{SHA1}/data/train.parquet.*no such file at this commit"):
        list(source.read_shard(spec))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an offline worker reads its own cache, and says when it lacks it
    with pytest.raises(ThymeError, match="not in this worker's HF cache"):
        list(source.read_shard(spec))
    write_cache(tmp_path / "tokenless-hf-cache", SHA1, repo_files(tmp_path, 2))
    assert len(list(source.read_shard(spec))) == 2
