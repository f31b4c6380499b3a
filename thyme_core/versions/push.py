"""Publish a data home's catalog as a version: objects first, manifest next, ref last.

Each step only adds immutable, content-addressed keys until the last one, a single conditional write of the
ref. A push killed at any point leaves no visible version (at most some unreferenced objects, which the
retry reuses instead of uploading again). The ref's etag is read before the upload starts and must still
hold when the ref is written, so of two concurrent publishers of one NAME/TAG, the later writer gets a
RefConflict (nothing overwritten) and can simply push again: its objects are already in the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from thyme_core import catalog
from thyme_core.base.home import DataHome
from thyme_core.versions import refs
from thyme_core.versions.manifest import Manifest, build_manifest
from thyme_core.versions.keys import RefConflict, Store, manifest_key, object_key, ref_key
from thyme_core.versions.store import parallel_map

LIST_ABOVE = 1000  # objects in a version from which the store's object listing replaces per-object checks


@dataclass
class PushPlan:
    home: DataHome
    store: Store
    name: str
    tag: str
    manifest: Manifest
    ref: refs.Ref | None  # the ref as read before uploading
    etag: str | None
    lineage: dict | None = None  # what the version was made from (recorded in the ref's history entry)


@dataclass(frozen=True)
class PushResult:
    name: str
    tag: str
    manifest: str
    unchanged: bool  # the ref already pointed at this content
    objects: int  # distinct objects in the version
    uploaded: int  # objects this push uploaded (the rest were in the store already)
    uploaded_bytes: int


def plan_push(home: DataHome, store: Store, name: str, tag: str = refs.DEFAULT_TAG) -> PushPlan:
    refs.check_name("name", name)
    refs.check_name("tag", tag)
    catalog.ensure_schema_parts(home)  # a version always carries every view's typed empty parts
    manifest = build_manifest(home)
    ref, etag = refs.read(store, name, tag)
    return PushPlan(home, store, name, tag, manifest, ref, etag)


def upload_objects(plan: PushPlan, threads: int = 8) -> tuple[int, int]:
    """Upload the version's objects the store lacks; returns (count, bytes) uploaded."""
    unique = {f.sha256: f for f in plan.manifest.files}
    # Many objects: one listing (1,000 keys a request) is cheaper than a HEAD per object.
    listed = set(plan.store.list_keys("objects/")) if len(unique) >= LIST_ABOVE else None

    def one(entry) -> int:
        key = object_key(entry.sha256)
        if (key in listed) if listed is not None else plan.store.exists(key):
            return -1
        plan.store.put_file(key, plan.home.absolute(entry.path), entry.sha256)
        return entry.bytes

    sizes = [s for s in parallel_map(one, list(unique.values()), threads) if s >= 0]
    return len(sizes), sum(sizes)


def publish(plan: PushPlan, uploaded: tuple[int, int] = (0, 0)) -> PushResult:
    """Write the manifest, then move the ref by compare-and-swap against the etag read at plan time."""
    sha = plan.manifest.sha256
    if not plan.store.exists(manifest_key(sha)):
        plan.store.put_bytes(manifest_key(sha), plan.manifest.to_bytes())
    ref = refs.Ref(plan.name, plan.tag, list(plan.ref.history) if plan.ref else [])
    entry = refs.history_entry(sha, plan.manifest.summary())
    if plan.lineage:
        entry["lineage"] = plan.lineage
    ref.history.append(entry)
    try:
        plan.store.write_ref(ref_key(plan.name, plan.tag), ref.to_bytes(), plan.etag)
    except RefConflict as exc:
        raise RefConflict(
            f"{plan.store.uri}: {exc}. Version {sha[:12]} is uploaded but not published; "
            f"run the push again to publish it on top of the other publisher's version"
        ) from None
    n_objects = len({f.sha256 for f in plan.manifest.files})
    return PushResult(plan.name, plan.tag, sha, False, n_objects, *uploaded)


def push(home: DataHome, store: Store, name: str, tag: str = refs.DEFAULT_TAG, lineage: dict | None = None
         ) -> PushResult:
    plan = plan_push(home, store, name, tag)
    plan.lineage = lineage
    n_objects = len({f.sha256 for f in plan.manifest.files})
    if plan.ref is not None and plan.ref.manifest == plan.manifest.sha256:
        return PushResult(name, tag, plan.manifest.sha256, True, n_objects, 0, 0)
    return publish(plan, upload_objects(plan))
