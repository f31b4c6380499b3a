"""Hand-written fakes and small fixtures' builders shared by test modules (fakes over mocks).

- RL: `RL_RESPONSES` (a script per group member: both crop in the sandbox, member 0 answers right), `steer`
  (walks the random tiny model through them inside its real generate calls), `RL_QUESTION`, `red_png`.
- Agent: `BatchedScripted`, the scripted backend called as a batching engine (vLLM) would be.
- Judge: `StandIn`, an OpenAI-compatible chat endpoint whose replies the test plans (text, status, malformed, hang).
- Versions: `make_home` (a real prepared home), `catalog_rows`, `VIEW_QUERIES`, `FailingStore` (dies on the
  n-th upload, as a killed push would).
- Concurrency: `in_threads` (a function run in n threads at once: what each returned, what each raised).
- Cluster: `eval_on_workers` (an evaluation's shards run as cluster steps, published; the version's rows).
- Sources: `source_with_image_files` (Parquet of base64 images beside JSONL naming image files by relative
  path, one missing), `upload_folder` (to S3, one PUT each: ETags are the MD5 of the bytes on any server).
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from thyme_core import catalog, prepare
from thyme_core.agent.backends.scripted import ScriptedBackend, steer_through_scripts
from thyme_core.base.home import DataHome
from thyme_core.synth import generate_records
from thyme_core.synth.writer import SCHEMA

CONFIG = prepare.PrepareConfig(shard_rows=4)

RL_CODE = '''<think>Zoom.
<code>
```python
from PIL import Image
c = Image.open(image_path).crop((0, 0, 150, 120))
c.save("/mnt/data/temp_processed_images/z.png")
print("/mnt/data/temp_processed_images/z.png")
```
</code>
<sandbox_output>/mnt/data/temp_processed_images/z.png</sandbox_output>
Red.</think>
<answer>{}</answer>'''
RL_RESPONSES = {"0": RL_CODE.format("A"), "1": RL_CODE.format("B")}  # by member: 0 answers right, 1 wrong
RL_QUESTION = "What colour is it?\nA. red\nB. blue"


def steer(backend):
    """Walk the random tiny model through each member's script inside its real generate calls."""
    backend.logits_processors = steer_through_scripts(RL_RESPONSES, backend.codec)


def red_png():
    buf = io.BytesIO()
    Image.new("RGB", (300, 240), (210, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


class BatchedScripted(ScriptedBackend):
    """The scripted backend as a batching engine would be called: a step's requests in one call."""

    batched = True

    def __init__(self, responses):
        super().__init__(responses)
        self.batches = []

    def generate_many(self, requests):
        self.batches.append([r.sample_id for r in requests])
        return super().generate_many(requests)


VIEW_QUERIES = {
    "sft_samples": "SELECT id, split, question, response, image_paths FROM sft_samples ORDER BY id",
    "images": "SELECT sha256, path, bytes FROM images ORDER BY sha256",
    "rejects": "SELECT split, source_row, reason FROM rejects ORDER BY ALL",
    "prepare_shards": "SELECT shard, samples_image, samples_text FROM prepare_shards ORDER BY shard",
}


def make_home(root, split="2round", n=6, seed=0) -> DataHome:
    """A real prepared home (synthetic Thyme rows through prepare_shard); a second call adds a source."""
    home = DataHome(root).ensure()
    source = root.parent / f"{root.name}-{split}-{seed}.parquet"
    rows = list(generate_records(split, n, seed, 160, 120, 1))
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), source)
    for spec in prepare.plan(source, split, CONFIG, home):
        prepare.prepare_shard(spec, home, CONFIG)
    catalog.publish(home)
    return home


def source_with_image_files(folder, split="2round", n=8, seed=3, size=(640, 480)):
    """A source folder as data is often shipped beside its images: `a.parquet` (n rows, base64 images, row
    groups of 2) and `sub/paths.jsonl`, whose 3 records name their images by paths relative to it
    (`img/r<i>_<j>.jpg`, in sub/img/) and whose 4th names `img/missing.jpg` (a MISSING_IMAGE_FILE reject)."""
    rows = list(generate_records(split, n + 3, seed, *size, 1))
    (folder / "sub" / "img").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows[:n], schema=SCHEMA), folder / "a.parquet", row_group_size=2)
    lines = []
    for i, row in enumerate(rows[n:]):
        names = [f"img/r{i}_{j}.jpg" for j in range(len(row["image"]))]
        for name, b64 in zip(names, row["image"]):
            (folder / "sub" / name).write_bytes(base64.b64decode(b64))
        lines.append({**row, "image": names})
    lines.append({**lines[0], "image": ["img/missing.jpg", *lines[0]["image"][1:]]})
    (folder / "sub" / "paths.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def upload_folder(client, bucket: str, prefix: str, folder) -> None:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(folder).as_posix()}", Body=path.read_bytes())


def catalog_rows(home: DataHome) -> dict:
    return {name: catalog.query(home, sql)[1] for name, sql in VIEW_QUERIES.items()}


class FailingStore:
    """A store that dies on the n-th object upload, as a killed push or a lost connection would."""

    def __init__(self, inner, fail_after: int):
        self.inner, self.left = inner, fail_after

    def put_file(self, key, path, sha256):
        if self.left == 0:
            raise ConnectionError("injected: connection lost mid-upload")
        self.left -= 1
        self.inner.put_file(key, path, sha256)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class StandIn(BaseHTTPRequestHandler):
    """The test sets `plan`: what to do on each request in turn (the last entry repeats): a reply text
    ("slow:" delays it 0.1 s), an HTTP status, "malformed" (truncated JSON) or "hang" (past the timeout)."""

    plan: list = ["yes"]
    seen: list = []  # (path, body, authorization header) per request
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def do_POST(self):
        cls = type(self)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with cls.lock:
            step = cls.plan[min(len(cls.seen), len(cls.plan) - 1)]
            cls.seen.append((self.path, body, self.headers.get("Authorization")))
            cls.in_flight += 1
            cls.peak = max(cls.peak, cls.in_flight)
        try:
            self.act(step)
        finally:
            with cls.lock:
                cls.in_flight -= 1

    def act(self, step):
        if step == "hang":
            time.sleep(0.6)  # longer than the client's timeout
            return self.reply(200, b"{}")
        if isinstance(step, int):
            return self.reply(step, b'{"error": "overloaded"}')
        if step == "malformed":
            return self.reply(200, b'{"choices": [{"message": ')
        if step.startswith("slow:"):
            time.sleep(0.1)
            step = step[5:]
        data = {"id": "x", "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": step}, "finish_reason": "stop"}]}
        self.reply(200, json.dumps(data).encode())

    def reply(self, status, data):
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and went away: as intended
            pass

    def log_message(self, *args):
        pass


class FakeHub(BaseHTTPRequestHandler):
    """The Hub endpoints huggingface_hub calls for one dataset repo `repo`, with commits by sha: dataset_info
    (/api/datasets/{repo}/revision/{rev}, with `?blobs=True` each file's size and, for .parquet files, LFS
    metadata whose sha256 is the content's, as the Hub stores large files) and resolve
    (/datasets/{repo}/resolve/{rev}/{path}, HEAD and GET, a `Range: bytes=a-b` answered 206 like the Hub's
    storage). Files are set per test: `commits` (sha -> {path: bytes}), `refs` (branch -> sha); `log` holds
    (method, path, Authorization, Range) of every request; `token`, when set, is required (401 otherwise)."""

    repo = "thyme-org/thyme-mini"
    commits: dict = {}
    refs: dict = {}
    log: list = []
    token: str | None = None

    def _commit(self, rev):
        sha = self.refs.get(rev, rev)
        return sha, self.commits.get(sha)

    def do_GET(self):
        self._serve(body=True)

    def do_HEAD(self):
        self._serve(body=False)

    def _serve(self, body):
        import hashlib

        auth = self.headers.get("Authorization")
        type(self).log.append((self.command, self.path, auth, self.headers.get("Range")))
        if self.token and auth != f"Bearer {self.token}":
            return self._send(401, b"unauthorized", {"X-Error-Code": "GatedRepo"}, body)
        api, resolve = f"/api/datasets/{self.repo}/revision/", f"/datasets/{self.repo}/resolve/"
        if self.path.startswith(api):
            rev, _, query = self.path[len(api):].partition("?")
            sha, files = self._commit(rev)
            if files is None:
                return self._send(404, b'{"error": "Revision not found"}', {"X-Error-Code": "RevisionNotFound"})
            siblings = [{"rfilename": f} for f in files]
            if "blobs" in query:
                for s in siblings:
                    data = files[s["rfilename"]]
                    s.update(size=len(data), blobId=hashlib.sha1(data).hexdigest())
                    if s["rfilename"].endswith(".parquet"):
                        s["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
            data = json.dumps({"id": self.repo, "sha": sha, "siblings": siblings}).encode()
            return self._send(200, data, {"Content-Type": "application/json"}, body)
        if self.path.startswith(resolve):
            rev, _, name = self.path[len(resolve):].partition("/")
            sha, files = self._commit(rev)
            if files is None or name not in files:
                return self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"}, body)
            data, status, headers = files[name], 200, {"X-Repo-Commit": sha, "Content-Type": "application/octet-stream",
                                                       "ETag": f'"{hashlib.sha256(files[name]).hexdigest()}"'}
            ranged = self.headers.get("Range", "")
            if ranged.startswith("bytes="):
                start, _, stop = ranged[6:].partition("-")
                start, stop = int(start), min(int(stop or len(data) - 1), len(data) - 1)
                headers["Content-Range"] = f"bytes {start}-{stop}/{len(data)}"
                data, status = data[start:stop + 1], 206
            return self._send(status, data, headers, body)
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


def serve_fake_hub(port: int = 0):
    """A FakeHub on 127.0.0.1 in a thread: (server, its URL); its state is reset. Stop it with .shutdown()."""
    from http.server import ThreadingHTTPServer

    httpd = ThreadingHTTPServer(("127.0.0.1", port), FakeHub)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    FakeHub.commits, FakeHub.refs, FakeHub.log, FakeHub.token = {}, {}, [], None
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def in_threads(fn, n: int) -> tuple[list, list]:
    """Run `fn()` in n threads at once; (what they returned, what they raised): a failure is the test's finding."""
    import threading

    got, errors = [], []

    def one():
        try:
            got.append(fn())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got, errors


def eval_on_workers(store, shards, spec, agent, files, driver_home, sql: str) -> tuple[list, list]:
    """Each evaluation shard through the cluster step (stored.eval_step, no Ray), published by the driver as
    `eval`: (the shard steps' results, the rows `sql` gives on that version)."""
    from thyme_core.cluster import publish, stored
    from thyme_core.versions.query import query_version

    out = [stored.eval_step(shard, spec, agent, store.uri, None, files) for shard in shards]
    published = publish.publish_shards(store, "eval", out, DataHome(driver_home))
    return out, query_version(store, f"eval@{published.manifest}", sql)[1]
