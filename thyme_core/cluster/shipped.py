"""Files only the driver has, shipped to cluster workers through the store: a benchmark TSV, a response file,
the model.

An evaluation reads two files named on the driver's command line: the benchmark TSV (base64 images, often
hundreds of MB) and, for the scripted backend, a response file. No disk is shared, so the driver puts each into
the store as an object named by its content (`objects/<ab>/<sha256>`, like a dataset's files: writing it again
costs one existence check, two drivers never conflict), and the task carries only its `Shipped` reference.
A worker downloads each file once per node into a lasting folder named by the sha256 (checked, written by
rename), so the shards of a run that land on one node read one copy, and a later run of the same benchmark
downloads nothing.

The model goes as a model version (versions/folders.py): `NAME@TAG|@HASH` is resolved in the store to its
manifest sha256; a folder on the driver is first stored by content (its objects the store lacks, then its
manifest; no ref moves, so nothing named changes, and a rerun uploads nothing). The task carries only the
manifest hash; a worker pulls it once per node into <worker home>/models/store/<sha256>/ (every file checked,
staged and renamed into place, so a half-downloaded folder is never used and two shards pulling it at once on
one node are safe) and loads it from there. The builtin `tiny` / `tiny:NAME` models are built per worker home,
as locally; any other value (an openai server's URL, a path the nodes see) goes as it is.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from thyme_core.base.errors import ThymeError
from thyme_core.base.fsio import clean_stale_staging
from thyme_core.base.home import DataHome
from thyme_core.prepare.digests import cached_sha256
from thyme_core.versions.folders import is_version_spec, models_cache, pull_folder, store_folder
from thyme_core.versions.keys import ObjectMissing, Store, object_key
from thyme_core.versions.manifest import sha256_file
from thyme_core.versions.pull import load_manifest

PULL_NAME = "model"  # the name a worker pulls the model under: NAME@<full manifest hash> needs no ref


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
    model: str | None = None  # the model version's manifest sha256 (None: the spec's model goes as it is)


def ship(store: Store, path: str | Path) -> Shipped:
    """Put a driver file into the store by content (once); its reference for the tasks."""
    path = Path(path)
    if not path.is_file():
        raise ThymeError(f"{path}: no such file to send to the cluster")
    sha = sha256_file(path)
    if not store.exists(object_key(sha)):
        store.put_file(object_key(sha), path, sha)
    return Shipped(sha, path.name, path.stat().st_size)


def ship_model(store: Store, model: str, home: DataHome | None = None) -> str | None:
    """The manifest sha256 the workers pull the model by: a version spec resolved in the store, a folder on
    this machine stored by content first (its files' hashes remembered in `home` by file identity, so the next
    run with the same weights reads none of them); None for the builtin tiny models and anything else."""
    if model and is_version_spec(model):
        _, sha, manifest = load_manifest(store, model)
        if manifest.kind != "model":
            raise ThymeError(f"{store.uri}: {model} is a {manifest.kind} version, not a model")
        return sha
    if model and Path(model).expanduser().is_dir():
        return store_folder(Path(model).expanduser(), store, "model", lambda p: cached_sha256(p, home))
    return None


def ship_eval_files(store: Store, tsv: str, response_file: str = "", model: str = "",
                    home: DataHome | None = None) -> EvalFiles:
    return EvalFiles(ship(store, tsv), ship(store, response_file) if response_file else None,
                     ship_model(store, model, home))


def for_workers(spec, files: EvalFiles):
    """The backend spec the driver plans with and sends: a shipped model named by its content (so the run id
    is the same for a folder and its version, and changes with the weights), not by a driver path."""
    return dataclasses.replace(spec, model=f"{PULL_NAME}@{files.model}") if files.model else spec


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


def model_copy(store: Store, sha: str, home: DataHome) -> Path:
    """The model version on this node: <home>/models/store/<sha>/, pulled and checked when not there yet."""
    cache = models_cache(home)
    clean_stale_staging(cache / ".tmp")  # a stage a killed worker left (its pid is gone)
    return pull_folder(store, f"{PULL_NAME}@{sha}", cache, pin=True)[2]  # kept while this worker lives


def localize(store: Store, files: EvalFiles, shard, spec, home: DataHome) -> tuple:
    """The shard and backend spec with the driver's files replaced by this node's copies in the worker home."""
    shard = dataclasses.replace(shard, tsv=str(local_copy(store, files.tsv, home.root / "shipped")))
    if files.responses is not None:
        spec = dataclasses.replace(spec, response_file=str(local_copy(store, files.responses, home.root / "shipped")))
    if files.model is not None:
        spec = dataclasses.replace(spec, model=str(model_copy(store, files.model, home)))
    return shard, spec
