"""Where versions live: a key -> bytes store with compare-and-swap refs. Two backends, one layout.

    objects/<ab>/<sha256>            file contents, addressed by their sha256 (written once, never changed)
    manifests/<sha256>.json          manifests, addressed by the sha256 of their bytes
    refs/<NAME>/<TAG>.json           a ref: the manifest it points at plus its whole history, moved by CAS

The store URI picks the backend: `s3://bucket/prefix` (S3Store, boto3, any S3-compatible endpoint) or a local
folder path / `file://` URI (LocalStore). The default, with no --store, is $THYME_STORE, else
$XDG_DATA_HOME/thyme-store (~/.local/share/thyme-store), kept apart from any data home.

Refs are the only mutable keys. `write_ref(key, data, etag)` creates the ref when etag is None and fails if
it exists, else replaces it only if it still has that etag; either failure raises RefConflict, so two
publishers never silently overwrite each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from thyme_core.base.errors import ThymeError
from thyme_core.versions.keys import ObjectMissing, RefConflict, Store, conflict_message
from thyme_core.base.fsio import clean_stale_staging

STORE_ENV = "THYME_STORE"


def default_store_uri() -> str:
    if os.environ.get(STORE_ENV):
        return os.environ[STORE_ENV]
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return str(base / "thyme-store")


def open_store(uri: str | None = None, endpoint=None) -> Store:
    """The store at `uri` (default: see module doc). An s3:// store checks credentials and bucket now, at
    `endpoint` (an s3.Endpoint; default: this process's environment)."""
    uri = uri or default_store_uri()
    if uri.startswith("s3://"):
        from thyme_core.versions.s3 import S3Store

        return S3Store(uri, endpoint=endpoint)
    if "://" in uri and not uri.startswith("file://"):
        raise ThymeError(f"store {uri!r}: use a local folder, file:///path or s3://bucket/prefix")
    return LocalStore(Path(uri.removeprefix("file://")).expanduser().absolute())


class LocalStore:
    """A folder. Writes stage in <root>/tmp and rename into place; refs are swapped under an flock, so CAS
    holds between processes of one machine (not across hosts sharing a network filesystem: use S3 there)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.uri = str(self.root)
        clean_stale_staging(self.root / "tmp")  # copies a killed push left half-written

    def _path(self, key: str) -> Path:
        return self.root / key

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _publish(self, key: str, write) -> None:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix=f".{final.name}.{os.getpid()}.")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put_file(self, key: str, path: Path, sha256: str) -> None:
        def write(f):
            with open(path, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)

        self._publish(key, write)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._publish(key, lambda f: f.write(data))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(f"{self.uri}: {key} is missing") from None

    def download(self, key: str, dest: Path) -> None:
        try:
            shutil.copyfile(self._path(key), dest)
        except FileNotFoundError:
            raise ObjectMissing(f"{self.uri}: {key} is missing") from None

    def list_keys(self, prefix: str) -> list[str]:
        top = self._path(prefix)
        if not top.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in top.rglob("*") if p.is_file()
                      and not p.name.startswith("."))

    def read_ref(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def write_ref(self, key: str, data: bytes, etag: str | None) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.parent / f".{path.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read_ref(key)
            if (current and current[1]) != etag:
                raise RefConflict(conflict_message(key, etag))
            self.put_bytes(key, data)
        return hashlib.sha256(data).hexdigest()

    def url(self, key: str) -> str:
        return str(self._path(key))

    def setup_duckdb(self, con) -> None:
        pass


def parallel_map(fn, items, threads: int) -> list:
    """fn over items on a thread pool, in order; the first failure cancels the calls not yet started, so a
    corrupted object early in a pull does not wait for the rest of the version to download."""
    pool = ThreadPoolExecutor(threads)
    futures = [pool.submit(fn, item) for item in items]
    try:
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
