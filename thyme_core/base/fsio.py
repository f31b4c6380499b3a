"""Atomic file output: nothing half-written ever becomes visible.

Every writer stages into the data home's tmp/ (same filesystem) and publishes with os.replace / rename,
so a crash leaves either the old state or the new one, and a rerun converges to the same result.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator


def atomic_write_bytes(path: Path, data: bytes, tmp_dir: Path | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tmp_dir is not None:
        Path(tmp_dir).mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir or path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_once(path: Path, data: bytes, tmp_dir: Path) -> bool:
    """Write content-addressed data unless it is already there. Returns True when this call wrote it.

    The staging name is unique per (process, thread, target), so no random-name retry loop is needed;
    concurrent writers of the same content each stage their own copy and the last rename wins.
    """
    path = Path(path)
    if path.exists():
        return False
    tmp = Path(tmp_dir) / f".{path.name}.{os.getpid()}.{threading.get_ident()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
    except FileNotFoundError:  # first write into a new fan-out folder or staging folder
        path.parent.mkdir(parents=True, exist_ok=True)
        Path(tmp_dir).mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
    try:
        os.replace(tmp, path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)
    return True


@contextlib.contextmanager
def atomic_dir(final: Path, tmp_dir: Path) -> Iterator[Path]:
    """Yield a staging folder; on success it is renamed to `final` in one step.

    If `final` appeared meanwhile (a concurrent or earlier run finished the same deterministic work),
    the staged copy is discarded: both have the same content by construction.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    Path(tmp_dir).mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=tmp_dir, prefix=f".{final.name}.{os.getpid()}."))
    try:
        yield stage
        try:
            os.rename(stage, final)
        except OSError:
            if not final.exists():
                raise
            shutil.rmtree(stage, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def clean_stale_staging(tmp_dir: Path) -> int:
    """Remove staging debris left by writers that died (kill -9, OOM): entries whose owner pid is gone.

    Staging names end in `.<pid>.<suffix>`; entries of live processes (a concurrent run) are left alone.
    Returns the number of entries removed.
    """
    removed = 0
    tmp_dir = Path(tmp_dir)
    if not tmp_dir.is_dir():
        return 0
    for entry in tmp_dir.iterdir():
        parts = entry.name.split(".")
        if len(parts) < 3 or not parts[-2].isdigit() or pid_alive(int(parts[-2])):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one of another user counts). A number no pid can be (a thread
    id in a file name, say) is no process."""
    if not 0 < pid <= 2**31 - 1:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True
