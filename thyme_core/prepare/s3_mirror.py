"""Sources on S3: mirror an s3://bucket/prefix of Thyme SFT files into the data home, downloading only what
is new or changed, so `thyme prepare s3://...` (and the nightly deployment) prepares what arrived since.

The mirror lives at <home>/sources/s3/<bucket>/<prefix>/; each object is downloaded to a staging file and
renamed into place, so a killed sync leaves no half-written source. Which objects changed is decided by
their ETag and size (recorded beside the mirror); what is *prepared* is still decided by content hash in
the shard keys, so a re-uploaded identical file costs a download and no preparation. Credentials and
endpoint come from the standard AWS configuration, as for dataset versions (versions/s3.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from thyme_core.base.fsio import atomic_write_bytes
from thyme_core.base.home import DataHome
from thyme_core.prepare.source import JSONL_SUFFIXES, PARQUET_SUFFIXES

_STATE = ".s3-objects.json"


@dataclass(frozen=True)
class SyncResult:
    folder: Path
    objects: int
    downloaded: int


def is_remote(source: str) -> bool:
    return str(source).startswith("s3://")


def sync_source(uri: str, home: DataHome) -> SyncResult:
    from thyme_core.versions.s3 import S3Store

    store = S3Store(uri)  # checks credentials and the bucket now, with a clear error
    parsed = urlparse(uri)
    folder = home.root / "sources" / "s3" / parsed.netloc / parsed.path.strip("/")
    folder.mkdir(parents=True, exist_ok=True)
    state_path = folder / _STATE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    listed = _list(store)
    downloaded = 0
    for key, tag in listed.items():
        dest = folder / key
        if state.get(key) == tag and dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage = home.tmp_dir / f".{dest.name}.sync"
        home.tmp_dir.mkdir(parents=True, exist_ok=True)
        store.download(key, stage)
        stage.replace(dest)
        state[key] = tag
        downloaded += 1
        atomic_write_bytes(state_path, json.dumps(state, indent=1, sort_keys=True).encode(), home.tmp_dir)
    return SyncResult(folder, len(listed), downloaded)


def _list(store) -> dict[str, str]:
    """Thyme source files under the store's prefix: key (relative) -> "etag:size"."""
    out = {}
    paginator = store.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=store.bucket, Prefix=store.prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"][len(store.prefix):]
            if key.lower().endswith(PARQUET_SUFFIXES + JSONL_SUFFIXES) and "/." not in f"/{key}":
                out[key] = f"{obj['ETag'].strip(chr(34))}:{obj['Size']}"
    return out
