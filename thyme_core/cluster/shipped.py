"""Files only the driver has, shipped to cluster workers through the store: a benchmark TSV, a response file.

An evaluation reads two files named on the driver's command line: the benchmark TSV (base64 images, often
hundreds of MB) and, for the scripted backend, a response file. No disk is shared, so the driver puts each into
the store as an object named by its content (`objects/<ab>/<sha256>`, like a dataset's files: writing it again
costs one existence check, two drivers never conflict), and the task carries only its `Shipped` reference.
A worker downloads each file once per node into a lasting folder named by the sha256 (checked, written by
rename), so the shards of a run that land on one node read one copy, and a later run of the same benchmark
downloads nothing.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from thyme_core.base.errors import ThymeError
from thyme_core.versions.keys import ObjectMissing, Store, object_key
from thyme_core.versions.manifest import sha256_file


@dataclass(frozen=True)
class Shipped:
    sha256: str
    name: str  # the file's name on the driver (its suffix tells readers the format: .tsv, .jsonl, .txt)
    size: int


@dataclass(frozen=True)
class EvalFiles:
    """What an evaluation shard reads from the driver's disk, as references into the store."""

    tsv: Shipped
    responses: Shipped | None = None  # the scripted backend's response file


def ship(store: Store, path: str | Path) -> Shipped:
    """Put a driver file into the store by content (once); its reference for the tasks."""
    path = Path(path)
    if not path.is_file():
        raise ThymeError(f"{path}: no such file to send to the cluster")
    sha = sha256_file(path)
    if not store.exists(object_key(sha)):
        store.put_file(object_key(sha), path, sha)
    return Shipped(sha, path.name, path.stat().st_size)


def ship_eval_files(store: Store, tsv: str, response_file: str = "") -> EvalFiles:
    return EvalFiles(ship(store, tsv), ship(store, response_file) if response_file else None)


def local_copy(store: Store, shipped: Shipped, folder: Path) -> Path:
    """The shipped file on this node: folder/<sha256>/<name>, downloaded and checked when not there yet."""
    dest = folder / shipped.sha256 / shipped.name
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = dest.parent / f".{shipped.name}.{os.getpid()}.fetch"
    try:
        store.download(object_key(shipped.sha256), stage)
    except ObjectMissing:
        raise ThymeError(f"{store.uri}: {shipped.name} ({shipped.sha256}) is not in the store: the driver "
                         f"ships it before the shards start (another store given to the workers?)") from None
    if sha256_file(stage) != shipped.sha256:
        stage.unlink(missing_ok=True)
        raise ThymeError(f"{store.uri}: object {shipped.sha256} ({shipped.name}) is corrupted")
    stage.replace(dest)
    return dest


def localize(store: Store, files: EvalFiles, shard, spec, folder: Path) -> tuple:
    """The shard and backend spec with the driver's paths replaced by this node's copies."""
    shard = dataclasses.replace(shard, tsv=str(local_copy(store, files.tsv, folder)))
    if files.responses is not None:
        spec = dataclasses.replace(spec, response_file=str(local_copy(store, files.responses, folder)))
    return shard, spec
