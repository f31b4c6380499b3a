"""The host side of the sandbox: warm templates, one live interpreter per session, and `run`.

A session is a host folder of read-only inputs (`<root>/<key>/in`), an interpreter forked from the template,
its output tmpfs (reached only through a directory descriptor the template sent), and, where the machine
allows, its cgroups. One run: thaw the session, send the code, wait for the reply until the run's one
deadline, freeze the session (every process and thread of it), collect the outputs from the descriptor
(collect.py), return. Between runs the session stays frozen, so code left running in the background uses
no CPU and cannot touch its files while the host reads them. A timeout, a broken reply or a crash kills
the interpreter with everything it started (pid 1 of its pid namespace); the next run starts a new one.

An interpreter found dead when code arrives (it was frozen, so the code of this session did not kill it)
is replaced, the session's earlier blocks are replayed in the new one, the run is retried once there, and
the reason lands in `ExecResult.retry_reason` (and `dead_before_run` counts it).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from thyme_core.base.errors import ThymeError
from thyme_core.sandbox import cgroups, channel, collect, launch
from thyme_core.sandbox.rewrite import prepare_code
from thyme_core.sandbox.template import CONTROL_TIMEOUT_S, Template
from thyme_core.sandbox.types import FATAL, MAX_RETRY_REASON_CHARS, ExecResult, Limits, Status
from thyme_core.sandbox.uids import BLOCK, UidBlock
from thyme_core.thyme_format import OUTPUT_DIR

SANDBOX_INPUT_DIR = "/mnt/data/input"


@dataclass
class _Session:
    session_id: str
    key: str
    dir: Path
    uid: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    sock: socket.socket | None = None
    pid: int = 0
    template: Template | None = None
    out_fd: int | None = None  # the output folder, as the host reads it
    group: cgroups.SessionGroup | None = None
    frozen: bool = False
    inputs: dict[str, str] = field(default_factory=dict)  # host path -> name in the input folder
    history: list[tuple[str, str | None]] = field(default_factory=list)  # blocks run in this interpreter
    runs: int = 0
    seq: int = 0  # numbers each request; the interpreter's reply carries it back


class _DeadBeforeRun(Exception):
    """The session's interpreter was gone before the code reached it."""


class SandboxPool:
    """Warm, isolated execution of model-written code, one live interpreter per session.

    isolation: "bwrap" (default; fails with a clear message when bubblewrap is missing) or "none" (no
    isolation at all; only for trusted code or machines without bwrap, and only when asked for).
    workers: how many runs execute at once (default: the number of cores).
    root: folder holding the session folders (default: a fresh temporary folder removed on close).
    recycle_after: sessions one template forks before a fresh template replaces it.
    spares: interpreters kept forked ahead (with their own empty folders) for new sessions that use the
        pool's default limits (default: `workers`); a background thread refills them.
    use_cgroups: per-session cgroups where the machine allows them (`cgroups` reports what holds).
    """

    def __init__(self, isolation: str = "bwrap", workers: int | None = None, root: str | os.PathLike | None = None,
                 recycle_after: int = 500, limits: Limits | None = None, spares: int | None = None,
                 use_cgroups: bool = True):
        self.mode = launch.worker_mode(isolation)
        if isolation == "bwrap":
            launch.find_bwrap()
        self.isolation = isolation
        self.limits = limits or Limits()
        self.recycle_after = recycle_after
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="thyme-sandbox-"))
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        workers = workers or os.cpu_count() or 1
        self._slots = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self._spare_ready = threading.Condition(self._lock)
        self._spares: list[_Session] = []
        self._spare_target = workers if spares is None else spares
        self._spare_count = 0
        self._sessions: dict[str, _Session] = {}
        self.dead_before_run = 0  # interpreters found dead when code arrived (each retried, see run)
        self._uids = UidBlock() if self.mode == "root" else None
        self._cg = cgroups.detect(use_cgroups)
        self.cgroups = self._cg.report()
        self._scrub = _host_names(self.root)
        self._template: Template | None = None
        self._old: list[Template] = []
        self._closed = False
        self._current_template(claim=False)  # start warm now, not on the first run
        self._refiller = threading.Thread(target=self._refill_spares, name="sandbox-spares", daemon=True)
        self._refiller.start()

    # ---- public API

    @property
    def uid_range(self) -> tuple[int, int] | None:
        """The uids this pool's sessions run as (root mode; None otherwise): no other pool holds them."""
        return (self._uids.first, self._uids.first + BLOCK - 1) if self._uids is not None else None

    def run(self, code: str, images: list[str | os.PathLike] = (), session_id: str = "default",
            limits: Limits | None = None) -> ExecResult:
        """Run one code block in the session's interpreter; later blocks see earlier blocks' variables.

        `images[0]` is what `image_path` means inside the code. Never raises for anything the code does.
        """
        limits = limits or self.limits
        start = time.perf_counter()
        with self._slots:
            session = self._session(session_id, limits)
            with session.lock:
                fresh = session.sock is None or session.runs == 0
                if session.sock is None:
                    self._start_interpreter(session, limits)
                session.runs += 1
                image_path, size = self._stage_inputs(session, [Path(p) for p in images])
                out = str(session.dir / "out") if self.mode == "none" else None
                prepared = prepare_code(code, image_path, size, output_dir=out)
                try:
                    result = self._run_in(session, prepared, image_path, limits)
                except _DeadBeforeRun as dead:
                    result, fresh = self._retry(session, prepared, image_path, limits, str(dead)), True
        return replace(result, duration_s=time.perf_counter() - start, fresh_interpreter=fresh)

    def close_session(self, session_id: str) -> None:
        """End the session: its interpreter and all it started are killed, its folders removed."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is None:
            return
        with session.lock:
            self._stop_interpreter(session)
            if self._uids is not None:
                with self._lock:
                    self._uids.give(session.uid)
            collect.remove_tree(session.dir)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._spare_ready.notify_all()
        self._refiller.join(timeout=CONTROL_TIMEOUT_S)
        for session in [*self._sessions.values(), *self._spares]:
            with session.lock:
                self._stop_interpreter(session)
            collect.remove_tree(session.dir)
        self._sessions.clear()
        self._spares.clear()
        for template in [self._template, *self._old]:
            if template is not None:
                template.close()
        self._cg.remove()
        if self._uids is not None:
            self._uids.release()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- one run

    def _run_in(self, session: _Session, prepared: str, image_path: str | None, limits: Limits) -> ExecResult:
        deadline = time.monotonic() + limits.timeout_s
        if session.template is None or not session.template.alive():
            raise _DeadBeforeRun("its template process had exited")
        before = collect.snapshot(session.out_fd)  # taken while still frozen
        if session.frozen and not self._freeze(session, False):
            raise _DeadBeforeRun("it could not be thawed")
        session.seq += 1
        request = {"code": prepared, "image_path": image_path, "cpu_s": limits.cpu_s,
                   "max_output_chars": limits.max_output_chars, "seq": session.seq}
        try:
            channel.send(session.sock, request, deadline)
        except TimeoutError:  # alive but not reading (its code filled the socket): this run's deadline
            return self._fail(session, Status.TIMEOUT, limits)
        except OSError as exc:
            raise _DeadBeforeRun(f"its socket refused the code ({exc.strerror or type(exc).__name__})") from None
        try:
            reply = None
            while not (isinstance(reply, dict) and reply.get("seq") == session.seq):  # skip earlier runs' replies
                reply = channel.receive(session.sock, deadline, max_bytes=64 * limits.max_output_chars + (1 << 20))
        except channel.Late:
            return self._fail(session, Status.TIMEOUT, limits)
        except channel.Broken:
            return self._fail(session, None, limits)
        if not collect.valid_reply(reply):
            return self._fail(session, Status.KILLED, limits, "RuntimeError: the sandbox interpreter sent a malformed reply")
        if not self._freeze(session, True):
            return self._fail(session, Status.KILLED, limits, "RuntimeError: the session's processes would not stop")
        images, problem = collect.new_images(session.out_fd, before, limits)
        result = collect.result_from(reply, images, problem, limits, self._names(session))
        if result.status in FATAL:
            self._stop_interpreter(session)  # recycle after any failure: the next run starts clean
        else:
            session.history.append((prepared, image_path))
        return result

    def _fail(self, session: _Session, status: Status | None, limits: Limits, error: str = "") -> ExecResult:
        """Kill the interpreter; the status (None: from how it died) and the message the model sees."""
        oom = session.group is not None and session.group.memory_exceeded()
        code = self._stop_interpreter(session)
        if status is None:  # 24: SIGXCPU, the CPU-time limit
            status = Status.MEMORY if oom else Status.TIMEOUT if code == -24 else Status.KILLED
        return ExecResult(status, error=error or collect.failure_message(status, limits))

    def _retry(self, session: _Session, prepared: str, image_path: str | None, limits: Limits,
               why: str) -> ExecResult:
        """Replace a dead interpreter, replay the session's earlier blocks in the new one, run this block."""
        history = list(session.history)
        self._stop_interpreter(session)
        with self._lock:
            self.dead_before_run += 1
        reason = f"the interpreter was found dead before the run ({why}); retried in a fresh interpreter"
        reason += f" after replaying {len(history)} earlier block(s)" if history else ""
        try:
            self._start_interpreter(session, limits)
            for code, path in history:
                if self._run_in(session, code, path, limits).status in FATAL:
                    raise _DeadBeforeRun("an earlier block failed on replay")
            result = self._run_in(session, prepared, image_path, limits)
        except (_DeadBeforeRun, ThymeError) as exc:
            self._stop_interpreter(session)
            result = ExecResult(Status.KILLED, error=collect.failure_message(Status.KILLED, limits))
            reason += f"; the retry failed too ({str(exc)[:120]})"
        return replace(result, retry_reason=reason[:MAX_RETRY_REASON_CHARS])

    def _freeze(self, session: _Session, frozen: bool) -> bool:
        """Freeze (or thaw) every process and thread of the session: its cgroup, else SIGSTOP of its tree."""
        if session.group is not None and session.group.v2 is not None:
            ok = session.group.freeze(frozen)
        else:
            ok = bool(session.template.call("stop" if frozen else "cont", session.pid).get("stopped"))
        session.frozen = frozen and ok
        return ok

    def _names(self, session: _Session) -> dict[str, str]:
        if self.mode != "none":
            return self._scrub
        inside = {str(session.dir / "out"): OUTPUT_DIR, str(session.dir / "in"): SANDBOX_INPUT_DIR}
        return inside | self._scrub

    # ---- sessions and interpreters

    def _session(self, session_id: str, limits: Limits | None = None) -> _Session:
        """The session's record; a new session takes a spare interpreter when its limits are the default."""
        with self._lock:
            if self._closed:
                raise ThymeError("the sandbox pool is closed")
            session = self._sessions.get(session_id)
            if session is None:
                if self._spares and limits == self.limits:
                    session = self._spares.pop()
                    self._spare_ready.notify()
                else:
                    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", session_id)[:48]
                    session = self._new_session(f"{safe}-{hashlib.sha256(session_id.encode()).hexdigest()[:12]}")
                session.session_id = session_id
                self._sessions[session_id] = session
            return session

    def _new_session(self, key: str) -> _Session:
        """Folders and uid for a session (call with self._lock held)."""
        uid = self._uids.take() if self._uids is not None else os.getuid()
        session = _Session("", key, self.root / key, uid)
        for sub in ("in", "out") if self.mode == "none" else ("in",):
            (session.dir / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(session.dir / sub, 0o755)
        return session

    def _refill_spares(self) -> None:
        while True:
            with self._spare_ready:
                while not self._closed and len(self._spares) >= self._spare_target:
                    self._spare_ready.wait()
                if self._closed:
                    return
                self._spare_count += 1
                spare = self._new_session(f"w{self._spare_count:06d}")
            try:
                self._start_interpreter(spare, self.limits)
            except ThymeError:
                time.sleep(1.0)  # the next run reports the problem; do not spin
            with self._lock:
                if spare.sock is not None:
                    self._spares.append(spare)
                if self._closed:
                    return

    def _current_template(self, claim: bool = True) -> Template:
        """The template new interpreters fork from (replaced when dead or used up); `claim` counts one more."""
        with self._lock:
            t = self._template
            if t is None or not t.alive() or t.spawned >= self.recycle_after:
                if t is not None:
                    self._old.append(t)
                t = self._template = Template(self.isolation, self.root)
            for old in [o for o in self._old if o.live == 0 or not o.alive()]:
                old.close()
                self._old.remove(old)
            if claim:
                t.spawned += 1
                t.live += 1
            return t

    def _start_interpreter(self, session: _Session, limits: Limits) -> None:
        template = self._current_template()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        group, cg_fds = None, []
        cwd = OUTPUT_DIR if self.mode != "none" else str(session.dir / "out")
        msg = {"key": session.key, "uid": session.uid, "cwd": cwd, "limits": limits.to_dict()}
        try:
            if self._cg.v2 is not None or self._cg.v1:
                group = cgroups.SessionGroup(self._cg, f"{session.key}-{template.spawned}-{secrets.token_hex(2)}",
                                             limits.memory_mb, limits.max_processes)
                cg_fds = group.procs_fds()
            pid, out_fd = template.spawn(msg, theirs.fileno(), cg_fds)
            if out_fd is None:  # no isolation: the host's own folder
                out_fd = os.open(session.dir / "out", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (ThymeError, OSError) as exc:
            ours.close()
            if group is not None:
                group.remove()
            with self._lock:  # the count decides when a drained template is closed (_current_template)
                template.live -= 1
            raise exc if isinstance(exc, ThymeError) else ThymeError(f"the sandbox could not start a session: {exc}")
        finally:
            theirs.close()
            for fd in cg_fds:
                os.close(fd)
        session.sock, session.pid, session.template, session.out_fd = ours, pid, template, out_fd
        session.group, session.frozen, session.history = group, False, []

    def _stop_interpreter(self, session: _Session) -> int | None:
        """Kill the session's interpreter (and everything it started); its exit code or -signal."""
        if session.sock is None:
            return None
        session.sock.close()
        template, session.sock = session.template, None
        status = template.call("kill", session.pid).get("status") if template is not None else None
        if session.out_fd is not None:
            os.close(session.out_fd)  # the tmpfs goes with its last reference
            session.out_fd = None
        if session.group is not None:
            session.group.remove()
            session.group = None
        if template is not None:
            with self._lock:
                template.live -= 1
        if self.mode == "none":  # the host's own folder: emptied for the next interpreter
            collect.remove_tree(session.dir / "out")
            (session.dir / "out").mkdir(mode=0o755, exist_ok=True)
        return status

    def _stage_inputs(self, session: _Session, images: list[Path]) -> tuple[str | None, tuple[int, int] | None]:
        """Copy the input images into the session's read-only folder (the originals are never touched:
        no link, no chmod); the first is `image_path`."""
        first = None
        for i, src in enumerate(images):
            key = str(src.resolve())
            name = session.inputs.get(key)
            if name is None:
                if not src.is_file():
                    raise ThymeError(f"input image not found: {src}")
                name = f"{len(session.inputs)}_{src.name}" if src.name in session.inputs.values() else src.name
                shutil.copyfile(src, session.dir / "in" / name)
                os.chmod(session.dir / "in" / name, 0o644)
                session.inputs[key] = name
            if i == 0:
                first = name
        if first is None:
            return None, None
        host = session.dir / "in" / first
        with Image.open(host) as im:
            size = im.size
        inside = str(host) if self.mode == "none" else f"{SANDBOX_INPUT_DIR}/{first}"
        return inside, size


def _host_names(root: Path) -> dict[str, str]:
    """Host folders that must not reach the model, longest first, and what is shown instead."""
    names = {str(root): "/sandbox", **{r: "/python" for r in launch.runtime_roots()}}
    return dict(sorted(names.items(), key=lambda kv: -len(kv[0])))
