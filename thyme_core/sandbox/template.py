"""The host's handle on one warm template process (the sandbox's `_worker.py`), from which sessions fork.

Requests go over a SEQPACKET control socket, one JSON object per packet, one at a time (a lock): `spawn`
(with the session's socket and the open `cgroup.procs` files; the answer carries the interpreter's pid and,
in isolated modes, a descriptor of its output tmpfs), `kill`, `stop`, `cont`.

Why the template outlives the thread that started it: bubblewrap's --die-with-parent is PR_SET_PDEATHSIG,
which fires when the *thread* that forked bwrap exits, not the process. A template started (or replaced
after `recycle_after` sessions) from a short-lived thread (a ThreadPoolExecutor worker of the agent loop,
a Prefect task thread) was SIGKILLed with every interpreter forked from it as soon as that thread ended:
the "spare interpreters die while idle" of the first round. The template is started without it; it exits
when its control socket closes (the host closed it, or the host process died), and being the child of
bubblewrap's pid 1, its namespace and every session in it goes with it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import threading

from thyme_core.base.errors import ThymeError
from thyme_core.sandbox import launch

STARTUP_TIMEOUT_S = 60.0
CONTROL_TIMEOUT_S = 30.0  # spawn and kill answer in milliseconds; longer means the template is broken


class Template:
    """One warm, pre-imported worker process; every session interpreter is forked from it."""

    def __init__(self, isolation: str, sessions_root):
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

    def request(self, msg: dict, fds: list[int] = ()) -> tuple[dict, list[int]]:
        """Send one request (with descriptors); its answer and the descriptors that came with it."""
        with self.lock:
            try:
                socket.send_fds(self.ctl, [json.dumps(msg).encode()], list(fds))
                data, got, _flags, _addr = socket.recv_fds(self.ctl, 1 << 16, 2)
            except OSError:
                self.close()  # a template that stops answering is replaced, with all it runs
                raise
        if not data:
            raise EOFError("sandbox template closed its control socket")
        return json.loads(data), got

    def spawn(self, msg: dict, session_fd: int, cgroup_fds: list[int]) -> tuple[int, int | None]:
        """Fork a session interpreter: (its pid, its output folder's descriptor or None)."""
        try:
            reply, got = self.request({"op": "spawn", **msg}, [session_fd, *cgroup_fds])
        except (OSError, EOFError, ValueError) as exc:
            raise ThymeError(f"the sandbox could not start a session interpreter: template failed: {exc}") from None
        if "pid" not in reply:
            for fd in got:
                os.close(fd)
            raise ThymeError(f"the sandbox could not start a session interpreter: {reply.get('error')}")
        return int(reply["pid"]), (got[0] if got else None)

    def call(self, op: str, pid: int) -> dict:
        """`kill`, `stop` or `cont` one interpreter (and all it started); {} when the template is gone."""
        if not self.alive():
            return {}
        try:
            return self.request({"op": op, "pid": pid})[0]
        except (OSError, EOFError, ValueError):
            return {}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self.ctl.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
        self.proc.wait()  # the log file stays readable for the error message; it goes with this object
