"""Session uids for root mode: a block of uids held by one pool alone, host-wide.

Each live session runs as its own uid, so per-uid kernel limits (RLIMIT_NPROC) and file ownership are the
session's own. Two pools on one machine (two Prefect workers, or two pools in one process) must never hand
out the same uid, so each pool claims a block with an exclusive `flock` on a lock file in a host-wide
folder; the kernel drops the lock when the pool's process dies, so a crashed worker frees its block.
The uids (from 2,000,000 up) must be unused on the host.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from thyme_core.base.errors import ThymeError

UID_BASE, BLOCK, BLOCKS = 2_000_000, 4096, 256
LOCK_DIRS = (Path("/run/thyme-sandbox"), Path("/tmp/thyme-sandbox-uids"))


class UidBlock:
    """uids [first, first + BLOCK) for one pool, held until `release` (or the process's end)."""

    def __init__(self):
        folder = _lock_dir()
        for k in range(BLOCKS):
            fd = os.open(folder / f"block-{k}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.fd, self.first = fd, UID_BASE + k * BLOCK
            self.free = list(range(self.first + BLOCK - 1, self.first - 1, -1))
            return
        raise ThymeError(f"all {BLOCKS} sandbox uid blocks are held by other pools (lock files in {folder})")

    def take(self) -> int:
        if not self.free:
            raise ThymeError(f"this sandbox pool has {BLOCK} sessions open at once, its most; close some")
        return self.free.pop()

    def give(self, uid: int) -> None:
        self.free.append(uid)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _lock_dir() -> Path:
    for folder in LOCK_DIRS:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            return folder
        except OSError:
            continue
    raise ThymeError(f"no folder for the sandbox's uid locks: tried {', '.join(map(str, LOCK_DIRS))}")
