"""Materialize a version into a data home, verifying every byte; nothing half-pulled is ever visible.

Every object is downloaded into a staging folder under the home's tmp/ and checked against the manifest
(sha256 and size); images the home already holds with the right hash are not downloaded again. Only when all
of them are in and correct is the version published: its images move into the content-addressed image store
(extra images there are invisible: no row refers to them), then the staged shards/ folder replaces the home's
in one atomic exchange (renameat2 RENAME_EXCHANGE; two renames where the kernel lacks it). A missing or
corrupted object, or a crash, before that point leaves the home exactly as it was.

A home that already holds a different catalog is only replaced when asked (`replace=True`); its old shards
and the images the version does not contain are then removed.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from thyme_core import catalog
from thyme_core.base.errors import ThymeError
from thyme_core.base.fsio import clean_stale_staging
from thyme_core.base.home import DataHome
from thyme_core.versions import refs
from thyme_core.versions.manifest import FileEntry, Manifest, build_manifest, sha256_file, version_paths
from thyme_core.versions.keys import ObjectMissing, Store, manifest_key, object_key
from thyme_core.versions.store import parallel_map


@dataclass(frozen=True)
class PullResult:
    name: str
    manifest: str
    unchanged: bool  # the home already held exactly this version
    files: int
    downloaded: int
    downloaded_bytes: int


def load_manifest(store: Store, spec: str) -> tuple[str, str, Manifest]:
    """NAME[@TAG|@HASH] -> (name, sha256, verified manifest)."""
    name, sha = refs.resolve(store, spec)
    try:
        data = store.get_bytes(manifest_key(sha))
    except ObjectMissing as exc:
        raise ThymeError(f"{exc} (the manifest of {spec})") from None
    return name, sha, Manifest.from_bytes(data, expect_sha256=sha)


def pull(store: Store, spec: str, home: DataHome, replace: bool = False, threads: int = 8) -> PullResult:
    name, sha, manifest = load_manifest(store, spec)
    home.ensure()
    clean_stale_staging(home.tmp_dir)
    if has_data(home):
        if build_manifest(home).sha256 == sha:
            return PullResult(name, sha, True, len(manifest.files), 0, 0)
        if not replace:
            raise ThymeError(f"{home.root} already holds a different catalog; pull into a new home, or pass "
                             f"--replace to replace it with {spec} ({sha[:12]})")
    stage = Path(tempfile.mkdtemp(dir=home.tmp_dir, prefix=f".pull.{os.getpid()}."))
    try:
        got = _fetch_all(store, manifest, home, stage, threads)
        _publish(home, stage, manifest if replace else None)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    catalog.publish(home)  # the views (the shards changed under them; the declarations may be newer)
    return PullResult(name, sha, False, len(manifest.files), len(got), sum(got))


def has_data(home: DataHome) -> bool:
    """True when shards/ holds a published part folder (not only the typed empty `_schema` parts)."""
    if not home.shards_dir.is_dir():
        return False
    return any(d.is_dir() and not d.name.startswith(("_", ".")) for t in home.shards_dir.iterdir() if t.is_dir()
               for d in t.iterdir())


def _fetch_all(store: Store, manifest: Manifest, home: DataHome, stage: Path, threads: int) -> list[int]:
    """Stage every file of the version, verified; returns the sizes of the objects actually downloaded."""
    by_sha: dict[str, list[FileEntry]] = {}
    for f in manifest.files:
        by_sha.setdefault(f.sha256, []).append(f)

    def one(entries: list[FileEntry]) -> int:
        first = entries[0]
        local = home.absolute(first.path)
        if first.path.startswith("images/") and local.is_file() and sha256_file(local) == first.sha256:
            return -1
        dest = stage / first.path
        fetch_object(store, first, dest, f"nothing was pulled into {home.root}")
        for other in entries[1:]:
            (stage / other.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(dest, stage / other.path)
        return first.bytes

    return [n for n in parallel_map(one, list(by_sha.values()), threads) if n >= 0]


def fetch_object(store: Store, entry: FileEntry, dest: Path, outcome: str) -> None:
    """Download one manifest entry's object to `dest` and check its size and sha256. `outcome` ends every
    error message (what the failure left behind, e.g. "nothing was pulled into HOME")."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        store.download(object_key(entry.sha256), dest)
    except ObjectMissing as exc:
        raise ThymeError(f"{exc}: it holds {entry.path}; {outcome}") from None
    size, sha = dest.stat().st_size, sha256_file(dest)
    if sha != entry.sha256 or size != entry.bytes:
        raise ThymeError(
            f"{store.uri}: object {entry.sha256} ({entry.path}) is corrupted: got {size} bytes with sha256 "
            f"{sha[:16]}…, expected {entry.bytes} bytes; {outcome}"
        )


def _publish(home: DataHome, stage: Path, exact: Manifest | None) -> None:
    staged_images = stage / "images"
    if staged_images.is_dir():
        for src in sorted(p for p in staged_images.rglob("*") if p.is_file()):
            dest = home.root / src.relative_to(stage)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
    if home.shards_dir.exists():
        _exchange(stage / "shards", home.shards_dir)  # the old shards land in the stage, removed with it
    else:
        os.rename(stage / "shards", home.shards_dir)
    if exact is not None:
        keep = {f.path for f in exact.files}
        for p in version_paths(home):
            if home.relative(p).startswith("images/") and home.relative(p) not in keep:
                p.unlink()


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders atomically where the kernel can (Linux renameat2), else with two renames."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
            return
    aside = a.with_name(a.name + ".old")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


def datasets_cache(home: DataHome) -> Path:
    return home.root / "datasets"


def checkout(store: Store, spec: str, home: DataHome) -> tuple[DataHome, str]:
    """A data home holding exactly the version NAME[@TAG|@HASH], to read (and, for replay, add to): the home
    itself when it already holds that version, else <home>/datasets/<sha256>/, pulled once and kept as a
    cache keyed by the manifest hash. The pull goes into a staging home renamed into place in one step, so
    two runs checking out one version on one machine at once are safe (the later rename keeps the first)."""
    name, sha, _ = load_manifest(store, spec)
    if has_data(home) and build_manifest(home).sha256 == sha:
        return home, sha
    final = datasets_cache(home) / sha
    if (final / "catalog.duckdb").is_file():
        return DataHome(final), sha
    datasets_cache(home).mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=datasets_cache(home), prefix=f".{sha[:12]}.{os.getpid()}."))
    try:
        pull(store, f"{name}@{sha}", DataHome(stage))
        try:
            os.rename(stage, final)
        except OSError:
            if not (final / "catalog.duckdb").is_file():
                raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return DataHome(final), sha
