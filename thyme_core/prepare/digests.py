"""Source files' sha256, remembered by what the filesystem says about them.

Every shard key holds its source file's content hash, so planning a prepare reads the whole file once: 1.3 GB
of photos take ~1 s of a core to hash, on the critical path before any shard starts, and a rerun that skips
every shard paid it again. A hash is remembered here under the file's identity as the kernel reports it
(device, inode, size, mtime_ns, ctime_ns: git's index rule; any write to the file changes ctime, which no
user call can set back; a file changed in the last RACY_S seconds is hashed but not remembered, git's "racy"
rule, because a second write within the same timestamp tick would leave every field equal), one small file per identity under `<home>/cache/source-digests/`, written
atomically (two runs at once at worst both hash). A file whose identity changed is hashed again; a stale
entry is never read because its identity no longer occurs.

Within one process, two callers asking for the same file (the CLI warming the cache while Prefect is
imported, then the flow's plan) share one hashing: the second waits for the first.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

from thyme_core.base.errors import ThymeError
from thyme_core.base.fsio import atomic_write_bytes
from thyme_core.base.home import DataHome

RACY_S = 2.0  # a file changed this recently is not remembered: a write in the same clock tick keeps its ctime
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def file_sha256(path: Path, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)  # (hashlib releases the GIL for blocks this large)
    except OSError as exc:
        raise ThymeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return h.hexdigest()


def cache_dir(home: DataHome) -> Path:
    return home.root / "cache" / "source-digests"


def _identity(path: Path) -> tuple[str, bool]:
    """(the identity, whether it is old enough to remember)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ThymeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    text = f"{Path(path).absolute()}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
    settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_S * 1e9
    return hashlib.sha256(text.encode()).hexdigest()[:32], settled


def cached_sha256(path: Path, home: DataHome | None) -> str:
    """The file's sha256, from the home's cache when its identity is unchanged (no home: always hashed)."""
    if home is None:
        return file_sha256(path)
    ident, settled = _identity(path)
    if not settled:
        return file_sha256(path)
    entry = cache_dir(home) / ident
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(ident, threading.Lock())
    with lock:
        try:
            digest = entry.read_text().strip()
            if len(digest) == 64:
                return digest
        except OSError:
            pass
        digest = file_sha256(path)
        if _identity(path)[0] == ident:  # unchanged while it was read: safe to remember
            entry.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(entry, digest.encode() + b"\n")
        return digest


def warm(paths: list[Path], home: DataHome) -> None:
    """Hash (or find cached) every file now, e.g. in a thread while something slower starts up."""
    for p in paths:
        cached_sha256(p, home)
