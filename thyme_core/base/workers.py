"""A warm process pool for CPU-bound shard work, shared by everything in one process.

Why not one process per task, or Prefect's ProcessPoolTaskRunner: a spawned worker re-imports its world
(Prefect alone is ~1 s of CPU per worker), which on a 2-core machine is seconds before the first image is
touched. Workers here come from a forkserver that has already imported the modules named in PRELOAD, so a
new worker is a fork (milliseconds), and the pool can be warmed while something else (a Prefect server)
starts. A forkserver rather than a plain fork: forking a process that has run cv2 or holds Prefect's
threads can deadlock the child. Orchestration stays outside: tasks hand a function and its arguments here.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

PRELOAD = ["thyme_core.prepare.shards", "thyme_core.catalog"]

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_size = 0


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def pool(max_workers: int | None = None) -> ProcessPoolExecutor:
    global _pool, _size
    with _lock:
        if _pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            _size = max_workers or default_workers()
            _pool = ProcessPoolExecutor(_size, mp_context=context)
            atexit.register(shutdown)
        return _pool


def warm(max_workers: int | None = None) -> None:
    """Start every worker now (e.g. while a server boots), so the first shard does not pay for it."""
    p = pool(max_workers)
    futures = [p.submit(_noop) for _ in range(_size)]
    for f in futures:
        f.result()


def run(fn: Callable[..., Any], *args: Any) -> Any:
    """Run fn(*args) in a pool worker and return its result (exceptions propagate)."""
    return pool().submit(fn, *args).result()


def shutdown() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None


def _noop() -> int:
    return os.getpid()
