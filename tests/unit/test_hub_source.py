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
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from thyme_core import catalog, prepare
from thyme_core.base.errors import ThymeError
from thyme_core.prepare import hub

datasets = pytest.importorskip("datasets")
CONFIG = prepare.PrepareConfig(shard_rows=2)
REPO = "thyme-org/thyme-mini"
SHA1, SHA2 = "1" * 40, "2" * 40


def png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (80, 60), colour).save(buf, "PNG")
    return buf.getvalue()


def repo_files(tmp_path, n_rows: int, colour=(200, 0, 0)) -> dict[str, bytes]:
    """The files of a dataset repo: data/train.parquet written by `datasets` (an Image sequence column whose
    images are repo files named relative to it: {bytes: None, path: "../images/i.png"}) and the images."""
    rows, files = [], {}
    for i in range(n_rows):
        files[f"images/{i}.png"] = png((colour[0], colour[1], i * 20))
        rows.append({"image": [{"bytes": None, "path": f"../images/{i}.png"}],
                     "question": f"<image>\nWhat colour is square {i}?\nA. red\nB. blue",
                     "response": "<think>It is red.</think>\n<answer>A</answer>"})
    features = datasets.Features({"image": datasets.Sequence(datasets.Image(decode=False)),
                                  "question": datasets.Value("string"), "response": datasets.Value("string")})
    out = tmp_path / f"export-{colour}.parquet"
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(out), batch_size=2)  # row groups of 2
    files["data/train.parquet"] = out.read_bytes()
    files["README.md"] = b"# a dataset card, not data"
    return files


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


class FakeHub(BaseHTTPRequestHandler):
    """The two endpoints hf_hub_download and HfApi.dataset_info call, for one repo with commits by sha."""

    commits: dict = {}  # sha -> {path: bytes}
    refs: dict = {}  # branch -> sha
    log: list = []  # (method, path, authorization)

    def _commit(self, rev):
        sha = self.refs.get(rev, rev)
        return sha, self.commits.get(sha)

    def do_GET(self):
        self._serve(body=True)

    def do_HEAD(self):
        self._serve(body=False)

    def _serve(self, body):
        type(self).log.append((self.command, self.path, self.headers.get("Authorization")))
        api = f"/api/datasets/{REPO}/revision/"
        resolve = f"/datasets/{REPO}/resolve/"
        if self.path.startswith(api):
            sha, files = self._commit(self.path[len(api):].split("?")[0])
            if files is None:
                return self._send(404, b'{"error": "Revision not found"}', {"X-Error-Code": "RevisionNotFound"})
            data = json.dumps({"id": REPO, "sha": sha, "siblings": [{"rfilename": f} for f in files]}).encode()
            return self._send(200, data, {"Content-Type": "application/json"}, body)
        if self.path.startswith(resolve):
            rev, _, name = self.path[len(resolve):].partition("/")
            sha, files = self._commit(rev)
            if files is None or name not in files:
                return self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"}, body)
            data = files[name]
            return self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                                          "Content-Type": "application/octet-stream"}, body)
        self._send(404, b"no route", {}, body)

    def _send(self, status, data, headers, body=True):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    FakeHub.commits, FakeHub.refs, FakeHub.log = {}, {}, []
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{httpd.server_address[1]}")
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
    assert not [p for _, p, _ in fake_hub.log if "/resolve/" in p]  # resolving downloads no data file
    specs = prepare.plan_hub_file(snapshot, "data/train.parquet", "hub", CONFIG)
    fetched = [p for m, p, _ in fake_hub.log if "/resolve/" in p and m == "GET"]
    assert fetched == [f"/datasets/{REPO}/resolve/{SHA1}/data/train.parquet"]  # that one file, at the sha
    assert {a for _, _, a in fake_hub.log} == {"Bearer hf_test_token"}
    for spec in specs:
        prepare.prepare_shard(spec, home, CONFIG)
    _, rows = catalog.query(home, "SELECT count(*) FROM sft_samples")
    assert rows == [(3,)]
    images = sorted(p for m, p, _ in fake_hub.log if m == "GET" and "/images/" in p)
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
