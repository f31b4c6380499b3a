"""Folder versions: a model (a Hugging Face folder: config, safetensors shards, tokenizer and processor files)
or a step checkpoint, in the same content-addressed store as dataset versions.

The manifest lists every file of the folder relative to it (`kind` "model" or "checkpoint", so a folder's
manifest never equals a dataset's); objects are shared with everything else in the store. Uploads go object
by object (multipart above the S3 backend's threshold), so an interrupted push resumes where it stopped: the
retry finds the shards already uploaded and sends only the rest, and nothing is visible until the ref moves.

A pull lands in <cache>/<manifest sha256>/: staged, every object verified, then renamed into place in one
step (fsio.atomic_dir), so the cache is keyed by content, a second pull of the same version is free, and two
pulls of one version on one machine at once are safe (the later rename finds the folder and discards its copy).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from thyme_core.base.errors import ThymeError
from thyme_core.base.fsio import atomic_dir
from thyme_core.base.home import DataHome
from thyme_core.versions import model_cache, refs
from thyme_core.versions.keys import Store, manifest_key
from thyme_core.versions.manifest import FileEntry, Manifest, sha256_file
from thyme_core.versions.pull import fetch_object, load_manifest
from thyme_core.versions.push import PushPlan, PushResult, publish, upload_objects
from thyme_core.versions.store import parallel_map


def folder_manifest(folder: Path, kind: str = "model", threads: int = 4,
                    digest: Callable[[Path], str] = sha256_file) -> Manifest:
    """Every file's sha256 (`digest`: e.g. a cache by file identity, prepare/digests.py, so a 15 GB model
    folder stored again by a later run is not read again)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ThymeError(f"{folder}: not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not paths:
        raise ThymeError(f"{folder}: nothing to push (an empty folder)")

    def entry(p: Path) -> FileEntry:
        return FileEntry(p.relative_to(folder).as_posix(), digest(p), p.stat().st_size)

    return Manifest(tuple(parallel_map(entry, paths, threads)), kind)


def push_folder(folder: Path, store: Store, name: str, tags: tuple[str, ...] = (refs.DEFAULT_TAG,),
                kind: str = "model", lineage: dict | None = None,
                digest: Callable[[Path], str] = sha256_file) -> PushResult:
    """Upload the folder's objects the store lacks, then its manifest, then move each tag (compare-and-swap).
    A tag already pointing at this content is left as it is."""
    manifest = folder_manifest(folder, kind, digest=digest)
    result = None
    for i, tag in enumerate(tags):
        refs.check_name("tag", tag)
        ref, etag = refs.read(store, refs.check_name("name", name), tag)
        plan = PushPlan(DataHome(folder), store, name, tag, manifest, ref, etag, lineage)
        if ref is not None and ref.manifest == manifest.sha256:
            got = PushResult(name, tag, manifest.sha256, True, len({f.sha256 for f in manifest.files}), 0, 0)
        else:
            got = publish(plan, upload_objects(plan) if i == 0 else (0, 0))
        result = result or got
    assert result is not None
    return result


def store_folder(folder: Path, store: Store, kind: str = "model", digest: Callable[[Path], str] = sha256_file) -> str:
    """Put a folder into the store by content and name nothing: its objects the store lacks, then its manifest
    (last, so a manifest in the store means its objects are there). Returns the manifest sha256, which any
    valid NAME@<that full hash> resolves to with no ref; storing the same folder again uploads nothing."""
    manifest = folder_manifest(folder, kind, digest=digest)
    upload_objects(PushPlan(DataHome(folder), store, "unnamed", refs.DEFAULT_TAG, manifest, None, None))
    if not store.exists(manifest_key(manifest.sha256)):
        store.put_bytes(manifest_key(manifest.sha256), manifest.to_bytes())
    return manifest.sha256


def pull_folder(store: Store, spec: str, cache: Path, threads: int = 8, pin: bool = False) -> tuple[str, str, Path]:
    """NAME[@TAG|@HASH] -> (name, manifest sha256, <cache>/<sha256>), downloading only when not cached. `pin`:
    this process will read the folder (load a model, train from it), so no prune removes it while the process
    lives; a pull that downloaded prunes the cache to THYME_MODEL_CACHE_GB when set (model_cache.py)."""
    bound = model_cache.bound_from_env()  # (a bad value is said before anything is downloaded)
    name, sha, manifest = load_manifest(store, spec)
    final = Path(cache) / sha
    for _ in range(3):  # (a prune may remove an unpinned folder between finding it and pinning it)
        pulled = not final.is_dir()
        if pulled:
            with atomic_dir(final, Path(cache) / ".tmp") as stage:
                def one(entry: FileEntry) -> None:
                    fetch_object(store, entry, stage / entry.path, f"nothing of {spec} was pulled")

                parallel_map(one, list(manifest.files), threads)
        model_cache.touch(final)
        if pin:
            try:
                model_cache.pin(final)
            except FileNotFoundError:
                continue
        if pulled and bound is not None:
            model_cache.prune(Path(cache), bound, keep={sha})
        return name, sha, final
    raise ThymeError(f"{spec}: removed from the model cache {cache} by other processes' prunes while pulling it")


def models_cache(home: DataHome) -> Path:
    return home.root / "models" / "store"


def is_version_spec(value: str) -> bool:
    """NAME@TAG / NAME@HASH (not an existing path): a version to pull rather than a folder."""
    return "@" in value and not os.path.exists(value)


def resolve_model(value: str | None, home: DataHome, store: Store | None) -> tuple[str | None, str | None]:
    """(folder or None, manifest sha256 or None): a model version spec is pulled into the home's model cache
    (and pinned there for this process's life: model_cache.py); anything else is returned as it is (a folder, or None for the tiny model)."""
    if not value or not is_version_spec(value):
        return value, None
    if store is None:
        raise ThymeError(f"model {value!r} is a version: a store is needed (--store or $THYME_STORE)")
    _, sha, path = pull_folder(store, value, models_cache(home), pin=True)  # read by this process: kept
    return str(path), sha
