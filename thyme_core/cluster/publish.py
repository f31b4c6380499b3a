"""The driver's side of a cluster run: skip finished shards, publish the version in one step, update its home.

A cluster run's version is what a local run's home would push (versions/push.py, same manifest format, so
`thyme data pull` and `thyme data query` work on it): the files NAME/TAG already held (a cluster prepare of a
second split adds to the first, as a second local prepare adds to a home), the typed empty `_schema` parts, and
every shard's entries. Manifests are canonical and path-sorted, so equal content gives an equal version hash,
whichever machines wrote the objects. The ref moves by compare-and-swap, as a push does.

Then the driver's own home pulls the version when that loses nothing: the home is empty, or holds exactly the
version the ref pointed at before. Otherwise the home is left alone (the version is queried in place).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from thyme_core import catalog
from thyme_core.base.home import DataHome
from thyme_core.cluster.engine import Resources, engine
from thyme_core.cluster.stored import StoredShard, read_marker
from thyme_core.versions import refs
from thyme_core.versions.keys import Store, object_key
from thyme_core.versions.manifest import FileEntry, Manifest, build_manifest, file_entry
from thyme_core.versions.pull import has_data, load_manifest, pull
from thyme_core.versions.push import PushPlan, publish


def run_shard(address: str, store: Store, table: str, key: str, step: Callable, args: tuple,
              resources: Resources) -> StoredShard:
    """One shard on the cluster, unless the store already holds its completion marker."""
    done = read_marker(store, table, key)
    if done is not None:
        return done
    return engine(address).run(step, *args, resources=resources)


def version_files(store: Store, spec: str) -> tuple[FileEntry, ...]:
    return load_manifest(store, spec)[2].files


def shard_parts(store: Store, spec: str, table: str, key: str) -> tuple[FileEntry, ...]:
    """The entries of one shard folder of a version (e.g. a prepared shard, the input of its replay)."""
    prefix = f"shards/{table}/{key}/"
    return tuple(f for f in version_files(store, spec) if f.path.startswith(prefix))


def prepared_shards(store: Store, spec: str, split: str) -> list[str]:
    """Keys of the prepared shards of a split in a version, in source order (queried in place)."""
    from thyme_core.versions.query import query_version

    _, rows = query_version(store, spec, "SELECT shard FROM prepare_shards WHERE split = ? "
                                         "ORDER BY source_file, row_start", [split])
    return [r[0] for r in rows]


@dataclass(frozen=True)
class Published:
    name: str
    tag: str
    manifest: str
    unchanged: bool  # the ref already pointed at exactly this content
    files: int
    home_updated: bool  # the driver's home now holds this version


def publish_shards(store: Store, name: str, shards: list[StoredShard], home: DataHome,
                   tag: str = refs.DEFAULT_TAG) -> Published:
    ref, etag = refs.read(store, name, tag)
    base = ref.manifest if ref else None
    files = {f.path: f for f in (load_manifest(store, f"{name}@{base}")[2].files if base else ())}
    for entry in _schema_entries(store, home):
        files[entry.path] = entry
    for shard in shards:
        files.update((e.path, e) for e in shard.entries)
    manifest = Manifest(tuple(files[p] for p in sorted(files)))
    unchanged = base == manifest.sha256
    if not unchanged:
        publish(PushPlan(home, store, name, tag, manifest, ref, etag))
    updated = _update_home(store, name, manifest.sha256, base, home)
    return Published(name, tag, manifest.sha256, unchanged, len(manifest.files), updated)


def _schema_entries(store: Store, home: DataHome) -> list[FileEntry]:
    """The typed empty parts every version carries (written by this process's pyarrow, as a push would)."""
    catalog.ensure_schema_parts(home)
    entries = [file_entry(home, p) for p in sorted(home.shards_dir.glob("*/_schema/*.parquet"))]
    for e in entries:
        if not store.exists(object_key(e.sha256)):
            store.put_file(object_key(e.sha256), home.absolute(e.path), e.sha256)
    return entries


def _update_home(store: Store, name: str, sha: str, base: str | None, home: DataHome) -> bool:
    if has_data(home):
        current = build_manifest(home).sha256
        if current == sha:
            return True
        if current != base:
            return False  # the home holds other work: keep it
    pull(store, f"{name}@{sha}", home, replace=True)
    return True
