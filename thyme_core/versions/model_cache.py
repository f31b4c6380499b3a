"""The per-machine model cache, <home>/models/store/<manifest sha256>/ (folders.pull_folder), kept within a bound.

Each pull of a model version (a worker's evaluation shards, a training stage's start model) leaves a whole
folder there, 15 GB for a 7B model; without a bound a GPU node's disk fills with every version it ever used.

- Last use: a folder's mtime, set when it is pulled and each time a pull finds it (`touch`).
- In use: a process that loads or reads a cached folder pins it (`pin`): a shared flock on
  <cache>/.locks/<sha256>, held until the process exits (the kernel drops it then, whatever killed the process).
  Pinned for the process's life, not a call's, because a training run reads its start model's folder again at
  its very end (the tokenizer and processor files go into final/). A long-lived process (a Ray worker) keeps
  its pins: those versions stay until it exits.
- `prune(cache, keep_bytes)` removes least recently used versions until the cache holds at most keep_bytes,
  skipping every pinned one (an exclusive flock that cannot be had now) and those named in `keep`. A folder goes
  by one rename out of the cache, then its files: no reader sees half of one, and a pull that wanted it
  downloads it again.
- THYME_MODEL_CACHE_GB (unset: no bound) makes every pull that downloaded something prune to that size, never
  removing the version it just pulled; `thyme model prune --keep-gb N` does it by hand.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from thyme_core.base.errors import ThymeError

LOCKS = ".locks"
_VERSION = re.compile(r"[0-9a-f]{64}")
_PINNED: dict[str, int] = {}  # "<cache>/<sha>" -> the open lock file this process holds (for its life)


@dataclass(frozen=True)
class Pruned:
    sha256: str
    bytes: int
    removed: bool  # False: pinned by a running process, kept


def versions(cache: Path) -> list[Path]:
    """The cached version folders, least recently used first."""
    try:
        found = [p for p in Path(cache).iterdir() if _VERSION.fullmatch(p.name) and p.is_dir()]
    except FileNotFoundError:
        return []
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def touch(folder: Path) -> None:
    try:
        os.utime(folder)
    except OSError:
        pass  # (gone meanwhile, or not ours to touch: it only orders evictions)


def pin(folder: str | Path) -> None:
    """Keep a cached version folder from being pruned while this process lives; a folder that is not a
    cached version (any other path) is left alone."""
    folder = Path(folder)
    if not _VERSION.fullmatch(folder.name):
        return
    key = str(folder.resolve())
    if key in _PINNED:
        return
    locks = folder.parent / LOCKS
    locks.mkdir(exist_ok=True)
    fd = os.open(locks / folder.name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a prune is removing this very folder
    _PINNED[key] = fd
    if not folder.is_dir():  # removed by that prune just before we got the lock: the caller pulls it again
        del _PINNED[key]
        os.close(fd)
        raise FileNotFoundError(folder)


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def prune(cache: Path, keep_bytes: int, keep: Iterable[str] = ()) -> list[Pruned]:
    """Remove least recently used versions until the cache holds at most keep_bytes (pinned ones and `keep`
    stay, and count). Returns what it looked at beyond the bound, in order: removed, or kept as pinned."""
    if keep_bytes < 0:
        raise ThymeError(f"a model cache bound must be 0 or more bytes, not {keep_bytes}")
    cache, keep = Path(cache), set(keep)
    folders = versions(cache)
    sizes = {f.name: size_of(f) for f in folders}
    total, out = sum(sizes.values()), []
    for folder in folders:
        if total <= keep_bytes:
            break
        if folder.name in keep:
            continue
        if _remove_unless_pinned(cache, folder):
            total -= sizes[folder.name]
            out.append(Pruned(folder.name, sizes[folder.name], True))
        else:
            out.append(Pruned(folder.name, sizes[folder.name], False))
    return out


def _remove_unless_pinned(cache: Path, folder: Path) -> bool:
    locks = cache / LOCKS
    locks.mkdir(exist_ok=True)
    fd = os.open(locks / folder.name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:  # (a lock is per open file, so this process's own pins refuse it too)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        gone = cache / ".tmp" / f"{folder.name}.removing.{os.getpid()}"
        gone.parent.mkdir(exist_ok=True)
        try:
            folder.rename(gone)
        except FileNotFoundError:
            return False  # another prune took it
        shutil.rmtree(gone, ignore_errors=True)
        return True
    finally:
        os.close(fd)


def bound_from_env() -> int | None:
    """THYME_MODEL_CACHE_GB as bytes (None when unset)."""
    raw = os.environ.get("THYME_MODEL_CACHE_GB", "").strip()
    if not raw:
        return None
    try:
        gb = float(raw)
    except ValueError:
        raise ThymeError(f"THYME_MODEL_CACHE_GB={raw!r} is not a number of gigabytes") from None
    if gb < 0:
        raise ThymeError(f"THYME_MODEL_CACHE_GB={raw!r} must be 0 or more")
    return int(gb * 1e9)
