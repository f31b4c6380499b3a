"""Isolated, warm, Thyme-compatible execution of model-written Python.

    with SandboxPool() as pool:
        r = pool.run(code, images=["photo.jpg"], session_id="sample-17")
        r.status, r.stdout, r.images      # Status.OK, "/mnt/data/temp_processed_images/crop.jpg\\n", (...)

How it is fast. One template process per pool imports and warms numpy, PIL and cv2 once, inside the
sandbox. Each session gets its own interpreter forked from that template (copy-on-write: a few ms, no
imports), which stays alive for the session, so later code blocks see earlier blocks' variables. We chose a
fork per session over a pool of pre-started sandboxed interpreters because every session must see only its
own input and output folders and must not share processes or state with the previous session: with a pool
each session would pay a full bwrap + interpreter start (about 0.3 s of CPU) or share a worker with the
session before; forking gives a fresh, private, warm interpreter per session at fork cost. The pool also
keeps a few interpreters forked ahead (`spares`, each with its own empty folders), so a new session usually
finds one ready. bench/sandbox_bench.py and docs/benchmarks.md have the figures.

What isolation covers (mode "bwrap", real kernel mechanisms, one adversarial test each in
tests/unit/test_sandbox_isolation.py):
- Network: a new, empty network namespace (loopback down, no interfaces): nothing is reachable.
- Files: the sandbox's filesystem holds only /usr, /etc/ld.so.cache, the Python runtime folders and the
  worker script (read-only), a minimal /dev, a private /proc, the session's input images at /mnt/data/input (read-only)
  and the session's output folder at /mnt/data/temp_processed_images (the only writable place). Other
  sessions' folders are hidden under an empty read-only tmpfs; the mounts cannot be undone from inside.
- Environment: cleared; only PATH, HOME, LANG, TMPDIR and thread-count variables are set (cv2 adds its
  own LD_LIBRARY_PATH when imported).
- Privileges: as root, each session switches to its own uid with no capabilities; otherwise it runs in a
  nested user namespace with every capability dropped. no_new_privs is set either way.
- Processes: each session interpreter is pid 1 of its own pid namespace (it cannot see or signal other
  sessions or the host; /proc shows only its own namespace, or nothing in the unprivileged mode); a
  timeout SIGKILLs it, which kills everything it started, and it is reaped.
- Resources (setrlimit): address space (memory_mb above the warm interpreter), CPU seconds per run,
  processes+threads (fork bombs fail with EAGAIN), largest file written, open files; stdout/stderr capped.
- Wall clock: enforced by the host, so code stuck inside numpy / cv2 is stopped too; after any timeout,
  memory error or crash the interpreter is replaced and the next run works (with a fresh namespace).

What it does not cover:
- No seccomp filter: the kernel's whole system-call surface is reachable (a kernel exploit escapes).
- No cgroups: memory is bounded by address space, not resident memory; CPU is not shared fairly
  (concurrency is bounded by `workers` instead); disk use is bounded per file, not per session in total.
- The process limit is exact only when the pool runs as root (a uid per session, from 2,000,000 up: those
  uids must be unused on the host) or when the kernel counts processes per user namespace (5.14+); timing
  side channels and /usr contents are not hidden.
- As root, the template (our code, never the model's) keeps CAP_SYS_ADMIN, SETUID, SETGID, SETPCAP and
  KILL inside its namespaces so it can mount and switch uids; a bug in the template matters more there.
- The session's code shares its interpreter with the pool's tiny protocol loop: it can forge its own
  result (never another session's) or make the next run of the same session misbehave.
- Mode "none" (isolation="none", CLI --unsafe-no-isolation) has none of the above except the rlimits,
  the wall-clock timeout and process-group kill: use it only for trusted code.
"""

from __future__ import annotations

import atexit
import os
import threading

from thyme_core.sandbox.pool import SandboxPool
from thyme_core.sandbox.rewrite import prepare_code
from thyme_core.sandbox.types import ExecResult, Limits, OutputImage, Status

__all__ = ["ExecResult", "Limits", "OutputImage", "SandboxPool", "Status", "default_pool", "prepare_code", "run",
           "shared_pool"]

_shared: dict[tuple, SandboxPool] = {}
_shared_lock = threading.Lock()


def shared_pool(isolation: str = "bwrap", limits: Limits | None = None) -> SandboxPool:
    """A process-wide pool per (isolation, limits), started on first use and closed at exit.

    The limits are the pool's own, so the interpreters it forks ahead of time fit every run; callers then
    run without a per-run `limits` override (an override starts a fresh interpreter instead).
    """
    key = (isolation, limits)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = SandboxPool(isolation=isolation, limits=limits)
            atexit.register(_shared[key].close)
        return _shared[key]


def default_pool() -> SandboxPool:
    """The process-wide isolated pool with default limits."""
    return shared_pool()


def run(code: str, images: list[str | os.PathLike] = (), session_id: str = "default",
        limits: Limits | None = None) -> ExecResult:
    """`default_pool().run(...)`: run one code block in the session's live interpreter."""
    return default_pool().run(code, images, session_id, limits)
