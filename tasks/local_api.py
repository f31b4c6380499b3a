"""A long-lived local Prefect API (with its UI) that every `thyme` command reuses while it runs.

`thyme server start` launches `prefect server start --host 127.0.0.1` in a session of its own, waits until
its /api/health answers, and records {pid, port, url} in <state dir>/server.json. Entry points call
`find()` (tasks/runtime.py): when that file names a live process whose API answers, they export
PREFECT_API_URL to it, so no command boots a temporary API of its own (~10 s of a busy 2-core machine). A
stale file (the process died, the machine rebooted) is removed and ignored. An explicit PREFECT_API_URL
always wins. The state dir is $THYME_STATE_DIR, else $XDG_STATE_HOME/thyme, else ~/.local/state/thyme: one
server per state dir; the server keeps its runs in the caller's PREFECT_HOME like any `prefect server`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from thyme_core.base.errors import ThymeError
from thyme_core.base.fsio import pid_alive

DEFAULT_PORT = 4200
START_TIMEOUT_S = 120.0  # `prefect server start` is healthy in ~3-8 s on a quiet 2-core machine, far more on a busy one


@dataclass(frozen=True)
class LocalServer:
    pid: int
    port: int
    url: str  # the API URL (http://127.0.0.1:PORT/api); the UI is at ui_url
    started_at: float
    log: str

    @property
    def ui_url(self) -> str:
        return self.url.removesuffix("/api")


def state_dir() -> Path:
    if os.environ.get("THYME_STATE_DIR"):
        return Path(os.environ["THYME_STATE_DIR"])
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "thyme"


def _state_file() -> Path:
    return state_dir() / "server.json"


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def find() -> LocalServer | None:
    """The running server this state dir records, or None (a stale record is removed)."""
    path = _state_file()
    try:
        server = LocalServer(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if pid_alive(server.pid) and healthy(server.url):
        return server
    if not pid_alive(server.pid):
        path.unlink(missing_ok=True)
    return None


def _port_free(port: int) -> bool:
    """Whether nothing listens on the port. SO_REUSEADDR as the server itself binds: the TIME-WAIT connections a
    just-stopped server leaves for a minute do not stop a new one, so they must not count as "in use" here."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start(port: int = DEFAULT_PORT, timeout: float = START_TIMEOUT_S) -> tuple[LocalServer, bool]:
    """Start the server unless one runs; returns (server, started by this call)."""
    running = find()
    if running:
        return running, False
    if not _port_free(port):
        raise ThymeError(f"port {port} on 127.0.0.1 is already in use (another Prefect server?): "
                         "choose another with --port")
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_API_URL=url)
    env.pop("PREFECT_API_URL", None)
    log_path = folder / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host",
                                 "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not healthy(url, timeout=1.0):
        if proc.poll() is not None:
            raise ThymeError(f"the Prefect server exited with code {proc.returncode} while starting: see {log_path}")
        if time.monotonic() > deadline:
            _kill_group(proc.pid)
            raise ThymeError(f"the Prefect server did not answer within {timeout:.0f} s: see {log_path}")
        time.sleep(0.3)
    server = LocalServer(pid=proc.pid, port=port, url=url, started_at=time.time(), log=str(log_path))
    tmp = _state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(server)))
    tmp.replace(_state_file())
    return server, True


def stop(timeout: float = 30.0) -> LocalServer | None:
    """Stop the recorded server (its whole process group); returns it, or None when none was recorded."""
    path = _state_file()
    try:
        server = LocalServer(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if pid_alive(server.pid):
        _kill_group(server.pid, timeout)
    path.unlink(missing_ok=True)
    return server


def _kill_group(pid: int, timeout: float = 30.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        try:  # our own child (start's timeout) must be reaped; another process's is reaped by init
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.2)
    if pid_alive(pid):
        os.killpg(pid, signal.SIGKILL)
