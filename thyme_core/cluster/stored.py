"""What a shard step does on a cluster worker: the stage's own shard function, its output straight into the store.

No disk is shared: a worker reads its shard from the source (prepare: an s3:// object by ranged GETs of its
row groups or lines, or a path every node sees; replay: the prepared parts and images, from the store), runs the same function a local run runs (prepare_shard,
replay_shard, eval_shard) in a scratch home of its own, then puts every output file into the store as
`objects/<ab>/<sha256>` (named by content, so writers on many machines never conflict) and writes the shard's
completion marker `parts/<table>/<key>.json` last: the shard's manifest entries and its counts. The step returns
the same entries and counts (a few KiB), never the data; the driver publishes the version from them. Where
S3 is (base/s3.Endpoint) comes with the task, as the store's URI does: a worker shares no environment
with the driver (an s3:// source's endpoint is in its ShardSpec); credentials are the worker's own. Files only
the driver has (an evaluation's benchmark TSV, response file and model) come through the store too (shipped.py).

A shard whose marker is in the store is finished: the driver does not submit it again (an interrupted run rerun
later redoes only the rest), and a worker that finds it (a retry racing a finished attempt) returns it as is.
The marker is beside the version, not in it, so it can carry run facts (the ShardRun: seconds, worker host,
images new to the worker's scratch store; `*.run.parquet` parts stay out of versions, as in a push).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow.parquet as pq

from thyme_core.base.errors import ThymeError
from thyme_core.base.fsio import clean_stale_staging
from thyme_core.base.home import DataHome
from thyme_core.catalog.schema import ShardRun, ShardSummary
from thyme_core.versions.keys import ObjectMissing, Store, object_key
from thyme_core.versions.manifest import FileEntry, file_entry, sha256_file, version_paths
from thyme_core.base.s3 import Endpoint
from thyme_core.versions.store import open_store

MARKER_FORMAT = "thyme-part/1"
SCRATCH_ENV = "THYME_SCRATCH"  # where workers make scratch homes (default: the system temp folder)


def marker_key(table: str, key: str) -> str:
    return f"parts/{table}/{key}.json"


@dataclass(frozen=True)
class StoredShard:
    table: str  # "prepare", "replay" or "agent"
    key: str
    entries: tuple[FileEntry, ...]  # the shard's files in the version: its Parquet parts and new images
    result: Any  # the stage's own result type: ShardResult, ReplayShardResult or ShardOutcome
    reused: bool  # the marker was already in the store


# Each table's result as marker JSON and back (the marker holds plain data, never pickles).
def _prepare_doc(r) -> dict:
    return {"summary": dataclasses.asdict(r.summary), "run": dataclasses.asdict(r.run) if r.run else None}


def _prepare_result(doc: dict, reused: bool):
    from thyme_core.prepare.shards import ShardResult

    run = None if reused or doc["run"] is None else ShardRun(**doc["run"])  # how a reused shard was made: not now
    return ShardResult(ShardSummary(**doc["summary"]), reused, run)


def _replay_doc(r) -> dict:
    return {"folder": f"shards/replay/{r.folder.name}", "blocks": r.blocks, "matched": r.matched,
            "run": dataclasses.asdict(r.run) if r.run else None}


def _replay_result(doc: dict, reused: bool):
    from thyme_core.catalog.schema import ReplayRun
    from thyme_core.replay.verify import ReplayShardResult

    run = None if reused or doc.get("run") is None else ReplayRun(**doc["run"])
    return ReplayShardResult(Path(doc["folder"]), reused, doc["blocks"], doc["matched"], run)


def _eval_result(doc: dict, reused: bool):
    from thyme_core.eval.evaluate import ShardOutcome

    return ShardOutcome(doc["key"], reused, doc["samples"], doc["correct"])


_CODECS: dict[str, tuple[Callable[[Any], dict], Callable[[dict, bool], Any]]] = {
    "prepare": (_prepare_doc, _prepare_result),
    "replay": (_replay_doc, _replay_result),
    "agent": (lambda r: {"key": r.key, "samples": r.samples, "correct": r.correct}, _eval_result),
}


def read_marker(store: Store, table: str, key: str) -> StoredShard | None:
    """The finished shard as its marker records it, or None when it is not finished."""
    try:
        doc = json.loads(store.get_bytes(marker_key(table, key)))
    except ObjectMissing:
        return None
    if doc.get("format") != MARKER_FORMAT:
        raise ThymeError(f"{store.uri}: {marker_key(table, key)} has format {doc.get('format')!r}, not {MARKER_FORMAT}")
    entries = tuple(FileEntry(**e) for e in doc["files"])
    return StoredShard(table, key, entries, _CODECS[table][1](doc["result"], True), True)


def _write_marker(store: Store, table: str, key: str, entries: list[FileEntry], result) -> None:
    files = [{k: v for k, v in dataclasses.asdict(e).items() if v is not None} for e in entries]
    doc = {"format": MARKER_FORMAT, "table": table, "key": key, "files": files, "result": _CODECS[table][0](result)}
    store.put_bytes(marker_key(table, key), json.dumps(doc, sort_keys=True).encode())


@contextlib.contextmanager
def scratch_home(table: str) -> Iterator[DataHome]:
    """A fresh data home for one shard, removed afterwards; one a killed worker left is removed by the next."""
    root = Path(os.environ.get(SCRATCH_ENV) or tempfile.gettempdir()) / "thyme-shards"
    root.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(root)  # names end in .<pid>.<random>: a dead owner's folder goes
    folder = Path(tempfile.mkdtemp(dir=root, prefix=f".{table}.{os.getpid()}."))
    try:
        yield DataHome(folder).ensure()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_stored(store_uri: str, table: str, key: str, work: Callable[[DataHome], Any],
               inputs: Callable[[Store, DataHome], None] | None = None, s3: Endpoint | None = None) -> StoredShard:
    """Run `work(home)` in a scratch home (after `inputs` fetched what it reads), store what it added."""
    store = open_store(store_uri, s3)
    done = read_marker(store, table, key)
    if done is not None:
        return done
    with scratch_home(table) as home:
        if inputs is not None:
            inputs(store, home)
        before = set(version_paths(home))
        result = work(home)
        made = [p for p in version_paths(home) if p not in before and "_schema" not in p.parts]
        entries = [file_entry(home, p) for p in made]
        for entry in entries:
            if not store.exists(object_key(entry.sha256)):
                store.put_file(object_key(entry.sha256), home.absolute(entry.path), entry.sha256)
        _write_marker(store, table, key, entries, result)  # last: the shard is finished once this exists
    return StoredShard(table, key, tuple(entries), result, False)


def fetch(store: Store, home: DataHome, entries: list[FileEntry]) -> None:
    """Download version files into a home at their paths, each checked against its sha256."""
    for entry in entries:
        dest = home.absolute(entry.path)
        if dest.is_file():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage = home.tmp_dir / f".{dest.name}.{os.getpid()}.fetch"
        store.download(object_key(entry.sha256), stage)
        if sha256_file(stage) != entry.sha256:
            stage.unlink(missing_ok=True)
            raise ThymeError(f"{store.uri}: object {entry.sha256} ({entry.path}) is corrupted")
        stage.replace(dest)


# ---- the three steps (module-level functions: Ray ships them by name to workers that import this module)


def prepare_step(spec, store_uri: str, config, s3: Endpoint | None = None) -> StoredShard:
    """One prepare shard, read from its source (an s3:// object by range, or a file the worker sees), into
    the store."""
    from thyme_core.prepare.shards import prepare_shard

    return run_stored(store_uri, "prepare", spec.key, lambda home: prepare_shard(spec, home, config), s3=s3)


def replay_step(prepare_key: str, parts: tuple[FileEntry, ...], store_uri: str, config,
                s3: Endpoint | None = None) -> StoredShard:
    """Replay one prepared shard: its sample parts and their images come from the store."""
    from thyme_core.replay.verify import replay_key, replay_shard

    def inputs(store: Store, home: DataHome) -> None:
        fetch(store, home, list(parts))
        images = {p for part in parts if part.path.endswith("_samples.parquet")
                  for paths in pq.read_table(home.absolute(part.path), columns=["image_paths"]).column(0).to_pylist()
                  for p in paths}
        fetch(store, home, [FileEntry(p, Path(p).name.split(".")[0], 0) for p in sorted(images)])

    return run_stored(store_uri, "replay", replay_key(prepare_key, config),
                      lambda home: replay_shard(home.shards_dir / "prepare" / prepare_key, home, config), inputs, s3)


def eval_step(shard, spec, config, store_uri: str, s3: Endpoint | None = None, files=None) -> StoredShard:
    """One evaluation shard; the model stays loaded in the worker. `files` (shipped.EvalFiles): the benchmark
    TSV, response file and model version the driver put into the store, read from this node's copies (else
    the paths in the shard and spec, which the worker must see)."""
    from thyme_core.agent.infer import cached_backend
    from thyme_core.cluster.shipped import localize
    from thyme_core.eval.evaluate import eval_shard

    # The backend's own files (the tiny model) live in a lasting worker home, so they are built once per node.
    worker_home = DataHome(Path(os.environ.get(SCRATCH_ENV) or tempfile.gettempdir()) / "thyme-worker-home").ensure()
    if files is not None:
        store = open_store(store_uri, s3)
        if read_marker(store, "agent", shard.key) is None:  # (a finished shard needs no inputs)
            shard, spec = localize(store, files, shard, spec, worker_home)

    def work(home: DataHome):
        return eval_shard(shard, home, spec, config, backend=cached_backend(spec, worker_home))

    return run_stored(store_uri, "agent", shard.key, work, s3=s3)
