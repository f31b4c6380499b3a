"""Hand-written fakes and small fixtures' builders shared by test modules (fakes over mocks).

- RL: `RL_RESPONSES` (a script per group member: both crop in the sandbox, member 0 answers right), `steer`
  (walks the random tiny model through them inside its real generate calls), `RL_QUESTION`, `red_png`.
- Agent: `BatchedScripted`, the scripted backend called as a batching engine (vLLM) would be.
- Versions: `make_home` (a real prepared home), `catalog_rows`, `VIEW_QUERIES`, `FailingStore` (dies on the
  n-th upload, as a killed push would).
"""

from __future__ import annotations

import io

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


