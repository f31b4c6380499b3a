"""What every store backend shares: the key layout, the Store protocol and its two errors.

Kept apart from store.py (the local backend and `open_store`) so the S3 backend can import them without
importing the module that imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from thyme_core.base.errors import ThymeError


class RefConflict(ThymeError):
    """The ref changed (or appeared) since it was read: someone else published first."""


class ObjectMissing(ThymeError):
    """A key the manifest or ref names is not in the store."""


def object_key(sha256: str) -> str:
    return f"objects/{sha256[:2]}/{sha256}"


def manifest_key(sha256: str) -> str:
    return f"manifests/{sha256}.json"


def ref_key(name: str, tag: str) -> str:
    return f"refs/{name}/{tag}.json"


class Store(Protocol):
    uri: str

    def exists(self, key: str) -> bool: ...
    def put_file(self, key: str, path: Path, sha256: str) -> None: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def download(self, key: str, dest: Path) -> None: ...
    def list_keys(self, prefix: str) -> list[str]: ...
    def read_ref(self, key: str) -> tuple[bytes, str] | None: ...
    def write_ref(self, key: str, data: bytes, etag: str | None) -> str: ...
    def url(self, key: str) -> str: ...
    def setup_duckdb(self, con) -> None: ...


def conflict_message(key: str, etag: str | None) -> str:
    what = "was created" if etag is None else "was moved"
    return f"{key} {what} by another publisher while this push ran; nothing was overwritten"
