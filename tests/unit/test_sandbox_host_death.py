"""A host that dies leaves nothing behind: its sandbox template and every session (stopped between runs, so
they cannot notice on their own) go with it, whether it exited or was killed without any clean-up."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed (make setup)")

HOST = """
import sys, time
from thyme_core.sandbox import SandboxPool
pool = SandboxPool(workers=2, root=sys.argv[1])
for s in ("a", "b"):
    assert pool.run("x = 1\\nprint(x)", session_id=s).stdout == "1\\n"
print("ready", flush=True)
time.sleep(600)
"""


def _processes_of(root: str) -> set[int]:
    """Every live process whose command line names the pool's folder (its bwrap), and their descendants."""
    parents, found = {}, set()
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if fields[0] == b"Z":
                continue
            parents.setdefault(int(fields[1]), []).append(int(name))
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if root.encode() in f.read():
                    found.add(int(name))
        except (OSError, IndexError):
            continue
    todo = list(found)
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_sessions_die_with_their_host(tmp_path, how):
    root = str(tmp_path / "pool")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    host = subprocess.Popen([sys.executable, "-c", HOST, root], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert host.stdout.readline().strip() == "ready"
        before = _processes_of(root)
        assert len(before) >= 3, before  # bwrap, the template, two sessions (and their namespaces' inits)
        host.send_signal(how)
        host.wait(timeout=30)
        deadline = time.monotonic() + 20
        while _processes_of(root) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _processes_of(root), "left behind: " + ", ".join(
            open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ")[:80].decode() for p in _processes_of(root))
    finally:
        host.kill()
