"""The host side of the sandbox: a warm template process, one live interpreter per session, and `run`.

A session is a folder pair under the pool root (`<key>/in` read-only inputs, `<key>/out` outputs) plus one
interpreter forked from the template. The pool talks to the template over a SEQPACKET control socket
(spawn / kill) and to each interpreter over its own stream socket (run). Timeouts are enforced here, on the
host: the template SIGKILLs the interpreter (pid 1 of its pid namespace, so all it started dies with it) and
reaps it; the next run of that session starts a fresh interpreter.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from thyme_core.base.errors import ThymeError
from thyme_core.sandbox import launch
from thyme_core.sandbox._worker import recv_msg, send_msg
from thyme_core.sandbox.outputs import classify, failure_message, link_or_copy, new_images, snapshot
from thyme_core.sandbox.rewrite import prepare_code
from thyme_core.sandbox.types import FATAL, ExecResult, Limits, Status
from thyme_core.thyme_format import OUTPUT_DIR

SANDBOX_INPUT_DIR = "/mnt/data/input"
# Root mode: each live session runs as its own uid from this range (per-uid process limits, no shared files).
UID_BASE, UID_COUNT = 2_000_000, 60_000
STARTUP_TIMEOUT_S = 60.0
MAX_REPLY_BYTES = 32 * 1024 * 1024  # a reply claiming more is the code forging the protocol
CONTROL_TIMEOUT_S = 15.0  # spawn and kill answer in milliseconds; longer means the template is broken


@dataclass
class _Session:
    session_id: str
    key: str
    dir: Path
    uid: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    sock: socket.socket | None = None
    pid: int = 0
    template: "_Template | None" = None
    inputs: dict[str, str] = field(default_factory=dict)  # host path -> name in the input folder
    runs: int = 0

    @property
    def out_dir(self) -> Path:
        return self.dir / "out"

    @property
    def in_dir(self) -> Path:
        return self.dir / "in"


class _Template:
    """One warm, pre-imported worker process; every session interpreter is forked from it."""

    def __init__(self, isolation: str, sessions_root: Path):
        self.isolation = isolation
        self.mode = launch.worker_mode(isolation)
        self.ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # A file, not a pipe: nobody drains the template's stderr while it runs, and a full pipe would block it.
        self._log = tempfile.TemporaryFile()
        argv = launch.template_argv(isolation, sessions_root, theirs.fileno())
        env = launch.SANDBOX_ENV if self.mode == "none" else {}
        self.proc = subprocess.Popen(
            argv, pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True,
        )
        theirs.close()
        self.lock = threading.Lock()
        self.spawned = 0
        self.live = 0
        self.draining = False
        self.ctl.settimeout(STARTUP_TIMEOUT_S)
        try:
            json.loads(self.ctl.recv(1 << 16) or b"null")["ready"]
        except (OSError, TypeError, ValueError, KeyError):
            self.close()
            raise ThymeError(f"the sandbox worker did not start ({isolation}): {self._stderr()}") from None
        self.ctl.settimeout(CONTROL_TIMEOUT_S)

    def _stderr(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip()[-2000:]

    def request(self, msg: dict, fds: list[int] = ()) -> dict:
        with self.lock:
            try:
                socket.send_fds(self.ctl, [json.dumps(msg).encode()], list(fds))
                data = self.ctl.recv(1 << 16)
            except OSError:
                self.close()  # a template that stops answering is replaced, with all it runs
                raise
        if not data:
            raise EOFError("sandbox template closed its control socket")
        return json.loads(data)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self.ctl.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
        self.proc.wait()  # the log file stays readable for the error message; it goes with this object


class SandboxPool:
    """Warm, isolated execution of model-written code, one live interpreter per session.

    isolation: "bwrap" (default; fails with a clear message when bubblewrap is missing) or "none" (no
    isolation at all; only for trusted code or machines without bwrap, and only when asked for).
    workers: how many runs execute at once (default: the number of cores).
    root: folder holding the session folders (default: a fresh temporary folder removed on close).
    recycle_after: sessions one template forks before a fresh template replaces it.
    keep_outputs: keep session folders when a session (or the pool) closes.
    spares: interpreters kept forked ahead (with their own empty folders) for new sessions that use the
        pool's default limits (default: `workers`); a background thread refills them.
    """

    def __init__(self, isolation: str = "bwrap", workers: int | None = None, root: str | os.PathLike | None = None,
                 recycle_after: int = 500, keep_outputs: bool = False, limits: Limits | None = None,
                 spares: int | None = None):
        launch.worker_mode(isolation)
        if isolation == "bwrap":
            launch.find_bwrap()
        self.isolation = isolation
        self.limits = limits or Limits()
        self.recycle_after = recycle_after
        self.keep_outputs = keep_outputs
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
        self.dead_before_run = 0  # interpreters found dead when code arrived (see _restart_and_run)
        self._free_uids = list(range(UID_BASE + UID_COUNT - 1, UID_BASE - 1, -1))
        self._template: _Template | None = None
        self._old: list[_Template] = []
        self._closed = False
        self._current_template(claim=False)  # start warm now, not on the first run
        self._refiller = threading.Thread(target=self._refill_spares, name="sandbox-spares", daemon=True)
        self._refiller.start()

    # ---- public API

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
                try:
                    result = self._run_in(session, code, [Path(p) for p in images], limits)
                except _DeadBeforeRun:
                    result = self._restart_and_run(session, code, images, limits, fresh)
        return _finish(result, time.perf_counter() - start, fresh)

    def _restart_and_run(self, session, code, images, limits, fresh) -> ExecResult:
        """The interpreter was dead before this code reached it (a spare that died idle). With no earlier
        block run in it, nothing is lost: start a new one and run there. Otherwise the session's state is
        gone and the run reports KILLED, as for any crash."""
        self._stop_interpreter(session)
        self.dead_before_run += 1
        if not fresh:
            return ExecResult(Status.KILLED, error=failure_message(Status.KILLED, limits))
        self._start_interpreter(session, limits)
        try:
            return self._run_in(session, code, [Path(p) for p in images], limits)
        except _DeadBeforeRun:
            self._stop_interpreter(session)
            return ExecResult(Status.KILLED, error=failure_message(Status.KILLED, limits))

    def session_dir(self, session_id: str) -> Path:
        """The host folder the session sees as /mnt/data/temp_processed_images (its output images land here)."""
        return self._session(session_id).out_dir

    def resolve(self, session_id: str, printed_path: str) -> Path | None:
        """The host file a path printed by the code means, when it names a file of the session's outputs."""
        out = self._session(session_id).out_dir
        text = printed_path.strip().strip("'\"")
        for prefix in (OUTPUT_DIR, str(out)):
            if text.startswith(prefix + "/"):
                candidate = (out / text[len(prefix) + 1:]).resolve()
                if candidate.is_file() and candidate.is_relative_to(out.resolve()):
                    return candidate
        return None

    def close_session(self, session_id: str, keep_outputs: bool | None = None) -> None:
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is None:
            return
        with session.lock:
            self._stop_interpreter(session)
            with self._lock:
                self._free_uids.append(session.uid)
            if not (self.keep_outputs if keep_outputs is None else keep_outputs):
                shutil.rmtree(session.dir, ignore_errors=True)

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
            if not self.keep_outputs or not session.session_id:  # unused spares leave nothing behind
                shutil.rmtree(session.dir, ignore_errors=True)
        self._sessions.clear()
        self._spares.clear()
        for template in [self._template, *self._old]:
            if template is not None:
                template.close()
        if self._own_root and not self.keep_outputs:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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
                    session.session_id = session_id
                    self._spare_ready.notify()
                else:
                    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", session_id)[:48]
                    session = self._new_session(f"{safe}-{hashlib.sha256(session_id.encode()).hexdigest()[:12]}")
                    session.session_id = session_id
                self._sessions[session_id] = session
            return session

    def _new_session(self, key: str) -> _Session:
        """Folders and uid for a session (call with self._lock held)."""
        session = _Session("", key, self.root / key, self._free_uids.pop())
        for sub in ("in", "out"):
            (session.dir / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(session.dir / sub, 0o755)
        if launch.worker_mode(self.isolation) == "root":  # the session runs as its own uid
            os.chown(session.out_dir, session.uid, session.uid)
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

    def _current_template(self, claim: bool = True) -> _Template:
        """The template new interpreters fork from (replaced when dead or used up); `claim` counts one more."""
        with self._lock:
            t = self._template
            if t is None or not t.alive() or t.spawned >= self.recycle_after:
                if t is not None:
                    t.draining = True
                    self._old.append(t)
                t = self._template = _Template(self.isolation, self.root)
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
        cwd = OUTPUT_DIR if template.mode != "none" else str(session.out_dir)
        msg = {"op": "spawn", "key": session.key, "uid": session.uid, "cwd": cwd, "limits": limits.to_dict()}
        try:
            reply = template.request(msg, [theirs.fileno()])
        except (OSError, EOFError, ValueError) as exc:
            reply = {"error": f"template failed: {exc}"}
        finally:
            theirs.close()
        if "pid" not in reply:
            ours.close()
            with self._lock:  # the count decides when a drained template is closed (_current_template)
                template.live -= 1
            raise ThymeError(f"the sandbox could not start a session interpreter: {reply.get('error')}")
        session.sock, session.pid, session.template = ours, reply["pid"], template

    def _stop_interpreter(self, session: _Session) -> int | None:
        """Kill the session's interpreter (and everything it started); its exit code or -signal."""
        if session.sock is None:
            return None
        session.sock.close()
        template, session.sock = session.template, None
        status = None
        if template is not None and template.alive():
            try:
                status = template.request({"op": "kill", "pid": session.pid}).get("status")
            except (OSError, EOFError, ValueError):
                status = None
        if template is not None:
            with self._lock:
                template.live -= 1
        return status

    def _run_in(self, session: _Session, code: str, images: list[Path], limits: Limits) -> ExecResult:
        image_path, size = self._stage_inputs(session, images)
        mapped_out = str(session.out_dir) if self.isolation == "none" else None
        prepared = prepare_code(code, image_path, size, output_dir=mapped_out)
        before = snapshot(session.out_dir)
        request = {"code": prepared, "image_path": image_path, "cpu_s": limits.cpu_s,
                   "max_output_chars": limits.max_output_chars}
        reply, status = self._exchange(session, request, limits.timeout_s)
        if reply is None:
            return ExecResult(status, error=failure_message(status, limits))
        out_images, problem = new_images(session.out_dir, before)
        result = classify(reply, out_images, problem)
        if result.status in FATAL:
            self._stop_interpreter(session)  # recycle after any failure: the next run starts clean
        return result

    def _exchange(self, session: _Session, request: dict, timeout_s: float) -> tuple[dict | None, Status]:
        sock = session.sock
        try:
            sock.settimeout(timeout_s)
            try:
                send_msg(sock, request)
            except OSError:
                raise _DeadBeforeRun from None
            reply = recv_msg(sock, max_bytes=MAX_REPLY_BYTES)
            if not isinstance(reply, dict) or "status" not in reply:
                raise ValueError("malformed reply")
            return reply, Status(reply["status"])
        except TimeoutError:
            self._stop_interpreter(session)
            return None, Status.TIMEOUT
        except (OSError, EOFError, ValueError):
            code = self._stop_interpreter(session)
            return None, Status.TIMEOUT if code == -24 else Status.KILLED  # 24: SIGXCPU, the CPU-time limit

    def _stage_inputs(self, session: _Session, images: list[Path]) -> tuple[str | None, tuple[int, int] | None]:
        """Place the input images in the session's read-only folder; the first is `image_path`."""
        first = None
        for i, src in enumerate(images):
            key = str(src.resolve())
            name = session.inputs.get(key)
            if name is None:
                if not src.is_file():
                    raise ThymeError(f"input image not found: {src}")
                name = f"{len(session.inputs)}_{src.name}" if src.name in session.inputs.values() else src.name
                link_or_copy(src, session.in_dir / name)
                session.inputs[key] = name
            if i == 0:
                first = name
        if first is None:
            return None, None
        host = session.in_dir / first
        with Image.open(host) as im:
            size = im.size
        inside = str(host) if self.isolation == "none" else f"{SANDBOX_INPUT_DIR}/{first}"
        return inside, size


def _finish(result: ExecResult, duration: float, fresh: bool) -> ExecResult:
    return replace(result, duration_s=duration, fresh_interpreter=fresh)


class _DeadBeforeRun(Exception):
    """The session's interpreter could not even receive the request."""
