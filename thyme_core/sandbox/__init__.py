"""Isolated, warm, Thyme-compatible execution of model-written Python.

    with SandboxPool() as pool:
        r = pool.run(code, images=["photo.jpg"], session_id="sample-17")
        r.status, r.stdout, r.images      # Status.OK, "/mnt/data/temp_processed_images/crop.jpg\\n", (...)
        r.printed_image(r.stdout).data     # the saved image's bytes, read once by the host

How it is fast. One template process per pool imports and warms numpy, PIL and cv2 once, inside the
sandbox. Each session gets its own interpreter forked from that template (copy-on-write: a few ms, no
imports), which stays alive for the session, so later code blocks see earlier blocks' variables. We chose a
fork per session over a pool of pre-started sandboxed interpreters because every session must see only its
own input and output folders and must not share processes or state with the previous session: with a pool
each session would pay a full bwrap + interpreter start (about 0.3 s of CPU) or share a worker with the
session before; forking gives a fresh, private, warm interpreter per session at fork cost. The pool also
keeps a few interpreters forked ahead (`spares`), so a new session usually finds one ready.
bench/sandbox_bench.py and docs/benchmarks.md have the figures.

Modules: pool.py (sessions, one run), template.py (the warm template's handle), _worker.py (what runs inside),
launch.py (the bwrap command line), collect.py (reading outputs and replies safely), channel.py (one deadline
per run), cgroups.py (per-session cgroups), uids.py (a uid block per pool), rewrite.py (Thyme's code edits).

What isolation covers (mode "bwrap", real kernel mechanisms, one adversarial test each in
tests/unit/test_sandbox_isolation.py, _hostile.py, _islands.py, _stress.py):
- Network, IPC, UTS: each session has its own network namespace (loopback down, no interfaces), IPC namespace
  (SysV and POSIX IPC) and UTS namespace: no TCP/UDP, abstract unix socket or IPC object is shared between two
  sessions, live or one after the other, in one pool or two.
- Users: as root, each session runs as its own uid from a block of 4,096 uids its pool holds alone host-wide
  (a flock: two pools, e.g. two workers, never share a uid or its limits) and then enters a user namespace of
  its own (keyrings are per user namespace, so a later session with the same uid finds nothing); unprivileged,
  each session gets a nested user namespace. No capabilities either way; no_new_privs is set.
- Files: the sandbox's filesystem holds only /usr, /etc/ld.so.cache, the Python runtime folders and the
  worker script (read-only), a minimal /dev, a private /proc, the session's input images at /mnt/data/input
  (read-only copies: the host's originals are never linked, chmod-ed or written) and a size-capped tmpfs of
  its own at /mnt/data/temp_processed_images (the only writable place; also TMPDIR). Other sessions' folders
  are hidden under an empty read-only tmpfs; the mounts cannot be undone from inside.
- Environment: cleared; only PATH, HOME, LANG, TMPDIR and thread-count variables are set (cv2 adds its
  own LD_LIBRARY_PATH when imported).
- Processes: each session interpreter is pid 1 of its own pid namespace (it cannot see or signal other
  sessions or the host); a timeout SIGKILLs it, which kills everything it started, and it is reaped.
- Reading outputs (collect.py): through a directory descriptor the template sent, never a host path; no
  link followed, nothing opened that blocks, regular files only, each read once into bytes the host owns
  (`OutputImage.data`); header, declared size and PNG CRCs checked on those bytes; bounded walk (depth,
  entries, images per run). The session is frozen while this happens.
- Replies (channel.py): one deadline per run (a reply that drips in is a timeout), bounded length, any parse
  failure (deep nesting, wrong shape, bad status) is a failed run, never a host exception; each reply carries
  the run's sequence number so a forger's leftovers never reach the next run. Every text field is capped
  (`Limits.max_output_chars`, `types.MAX_ERROR_CHARS`), lone surrogates are replaced, and host folders (the
  pool root, the Python runtime) are shown as /sandbox and /python.
- Resources per session: memory of all processes together, process count and the freeze use cgroups where
  the machine allows (cgroups.py; `pool.cgroups` reports what holds, README "Sandbox" has the table), else
  RLIMIT_AS / RLIMIT_NPROC per process and SIGSTOP of the process tree; disk by the tmpfs size in any case;
  CPU seconds per run (RLIMIT_CPU), largest file, open files; stdout/stderr capped. Between runs the session
  is frozen: a background thread uses no CPU between turns.
- Wall clock: enforced by the host, so code stuck inside numpy / cv2 is stopped too; after any timeout,
  memory error or crash the interpreter is replaced and the next run works (with fresh namespaces).
- Honest code never dies: templates are started without bwrap's --die-with-parent (PR_SET_PDEATHSIG fires
  when the launching *thread* ends, which killed templates started from worker threads with every
  interpreter forked from them); an interpreter found dead anyway is replaced, the session's earlier blocks
  are replayed and the run is retried once, with `ExecResult.retry_reason` saying why.

What it does not cover:
- No seccomp filter: the kernel's whole system-call surface is reachable (a kernel exploit escapes).
- Without cgroups (a non-root pool without delegation, or no writable hierarchy) memory is bounded per
  process by address space, not across processes; the process limit is per uid (exact only as root, or per
  user namespace on kernels >= 5.14). cgroup v1 memory limits count resident memory, not swap.
- Timing side channels and /usr contents are not hidden; uids from 2,000,000 up must be unused on the host.
- As root, the template (our code, never the model's) keeps CAP_SYS_ADMIN, SETUID, SETGID, SETPCAP and
  KILL inside its namespaces so it can mount and switch uids; a bug in the template matters more there.
- The session's code shares its interpreter with the pool's tiny protocol loop: it can forge its own
  result (never another session's, and only within the caps and checks above).
- Outputs live in the interpreter's tmpfs: after a timeout, crash or retry the new interpreter starts with
  an empty output folder (the retry replays earlier blocks, which recreates their files).
- Mode "none" (isolation="none", CLI --unsafe-no-isolation) has none of the namespaces, uid or tmpfs
  guarantees; it keeps the rlimits, cgroups, freeze, wall-clock timeout, safe reads and caps: use it only
  for trusted code.
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
