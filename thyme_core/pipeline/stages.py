"""Stage keys and stage results: the one place that decides whether a pipeline stage is already done.

A stage's key is the hash of what its result depends on: its input versions (dataset or model manifest
hashes, a source's file hashes), its config, and the code version of its entry modules (base/versioning).
Every input is a content hash, so the key is the same on any worker, and the pipeline can compute it
before it dispatches anything. When a stage finishes it records its result under stages/<key>.json in the
store (the versions it produced, its flow run). The pipeline (before dispatching a stage to its pool) and
the stage itself (run in-process, e.g. `thyme demo`) both ask `published(store, key)`: a recorded key is not
run again. Results are recorded after the versions they name are published, so a recorded result is
always complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from thyme_core.base.errors import ThymeError
from thyme_core.versions.keys import ObjectMissing, Store
from thyme_core.versions.manifest import sha256_file

TINY = "tiny"  # the start model of a run without one: built offline, the same everywhere (model/tiny.py)


def stage_key(stage: str, **parts) -> str:
    doc = json.dumps({"stage": stage, **parts}, sort_keys=True, default=_plain)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def _plain(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not part of a stage key: {value!r}")


def result_key(key: str) -> str:
    return f"stages/{key}.json"


def published(store: Store, key: str) -> dict | None:
    """The recorded result of stage `key`, or None when the stage has not finished yet."""
    try:
        return json.loads(store.get_bytes(result_key(key)))
    except ObjectMissing:
        return None


def record(store: Store, key: str, stage: str, outputs: dict, flow_run: str | None = None, **extra) -> dict:
    """Record a finished stage: `outputs` names the versions it produced ({"dataset": "NAME@SHA"}, ...)."""
    doc = {"stage": stage, "key": key, "outputs": outputs, "flow_run": flow_run,
           "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra}
    store.put_bytes(result_key(key), json.dumps(doc, sort_keys=True).encode())
    return doc


def source_fingerprint(source: str) -> list | None:
    """A local source file or folder as (name, sha256) pairs; None for a remote source (its prepare stage is
    always dispatched: its shards are keyed by the objects' ETags and skip themselves when finished)."""
    path = Path(source)
    if "://" in source or not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                   and p.suffix in (".parquet", ".jsonl", ".json"))
    return [(p.name if path.is_file() else p.relative_to(path).as_posix(), sha256_file(p)) for p in files]


def version_sha(store: Store, spec: str) -> str:
    """The manifest hash a NAME[@TAG|@HASH] names (without pulling anything)."""
    from thyme_core.versions import refs

    return refs.resolve(store, spec)[1]


def model_identity(store: Store | None, model: str | None) -> str:
    """A start model as a key sees it: a version's manifest hash, `tiny`, or a folder path as given."""
    if not model:
        return TINY
    if "@" in model and not Path(model).exists():
        if store is None:
            raise ThymeError(f"model {model!r} is a version: a store is needed")
        return version_sha(store, model)
    return str(model)
