"""Sessions are islands: no channel between two sessions (live or one after the other, one pool or two), and
limits that hold per session, not per process. Real bwrap, real kernel objects; one test per guarantee."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from thyme_core.sandbox import Limits, SandboxPool, Status

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed (make setup)")

# Each snippet opens a channel end in session A (kept open: A stays alive, frozen between runs) and tries
# to reach it from session B; B prints REACHED when it gets through.
LISTEN = {
    "abstract unix socket": ("import socket\na = socket.socket(socket.AF_UNIX)\na.bind('\\0thyme-island')\na.listen()",
                             "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('\\0thyme-island')"),
    "loopback tcp": ("import socket\na = socket.socket()\ntry:\n    a.bind(('127.0.0.1', 47123)); a.listen()\n"
                     "except OSError:\n    pass",
                     "import socket\nsocket.create_connection(('127.0.0.1', 47123), timeout=1)"),
    "loopback udp": ("import socket\na = socket.socket(type=socket.SOCK_DGRAM)\ntry:\n    a.bind(('127.0.0.1', 47124))\n"
                     "except OSError:\n    pass",
                     "import socket\ns = socket.socket(type=socket.SOCK_DGRAM)\ns.connect(('127.0.0.1', 47124))\n"
                     "s.send(b'x')\ns.settimeout(0.5)\ns.recv(1)"),
    "sysv shared memory": ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nassert libc.shmget(0x7417, 4096, 0o1666) >= 0",
                           "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nassert libc.shmget(0x7417, 0, 0o666) >= 0"),
    "sysv message queue": ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nassert libc.msgget(0x7418, 0o1666) >= 0",
                           "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nassert libc.msgget(0x7418, 0o666) >= 0"),
    "posix message queue": ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                            "assert libc.mq_open(b'/thyme-island', 0o100 | 2, 0o666, None) >= 0",
                            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nassert libc.mq_open(b'/thyme-island', 2) >= 0"),
    "user keyring": ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                     "assert libc.syscall(248, b'user', b'thyme-island', b'secret', 6, -4) > 0",  # add_key to @u
                     "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                     "assert libc.syscall(250, 10, -4, b'user', b'thyme-island', 0) > 0"),  # KEYCTL_SEARCH @u
    "temp folder": ("import tempfile\nopen(tempfile.gettempdir() + '/thyme-island', 'w').write('x')",
                    "import tempfile, os\nassert os.path.exists(tempfile.gettempdir() + '/thyme-island')"),
}


def reach(pool_b, session_b, attempt):
    code = f"try:\n" + "".join(f"    {line}\n" for line in attempt.splitlines()) + \
        "    print('REACHED')\nexcept (OSError, AssertionError) as e:\n    print('blocked', type(e).__name__)"
    return pool_b.run(code, session_id=session_b)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2) as p:
        yield p


@pytest.mark.parametrize("kind", sorted(LISTEN))
def test_no_channel_between_two_live_sessions(pool, kind):
    opened, attempt = LISTEN[kind]
    a = pool.run(opened, session_id=f"a-{kind}")
    assert a.status in (Status.NO_OUTPUT, Status.OK), a
    if not kind.startswith("loopback"):  # the attempt works where the channel is (loopback is down everywhere)
        assert reach(pool, f"a-{kind}", attempt).stdout.startswith("REACHED"), kind
    b = reach(pool, f"b-{kind}", attempt)
    assert b.stdout.startswith("blocked"), (kind, b)
    pool.close_session(f"a-{kind}")
    pool.close_session(f"b-{kind}")


@pytest.mark.parametrize("kind", ["user keyring", "sysv shared memory", "abstract unix socket", "temp folder"])
def test_no_channel_to_a_later_session_even_with_the_same_uid(kind):
    opened, attempt = LISTEN[kind]
    with SandboxPool(workers=1, spares=0) as p:
        first = p.run(opened + "\nimport os\nprint(os.getuid())", session_id="first")
        p.close_session("first")  # its uid goes back to the pool and is the next one handed out
        later = reach(p, "later", attempt)
        assert later.stdout.startswith("blocked"), (kind, later)
        if os.geteuid() == 0:  # root mode: the later session really runs as the same uid
            assert p.run("import os\nprint(os.getuid())", session_id="later").stdout.split() == first.stdout.split()[-1:]


def test_two_pools_get_disjoint_uids_and_no_channel(pool):
    if os.geteuid() != 0:
        pytest.skip("per-session uids need root")
    with SandboxPool(workers=1, spares=1) as other:
        assert other._uids.first != pool._uids.first
        uid_a = int(pool.run("import os\nprint(os.getuid())", session_id="pool-a").stdout)
        uid_b = int(other.run("import os\nprint(os.getuid())", session_id="pool-b").stdout)
        assert uid_a // 4096 != uid_b // 4096
        opened, attempt = LISTEN["abstract unix socket"]
        pool.run(opened, session_id="pool-a")
        assert reach(other, "pool-b", attempt).stdout.startswith("blocked")


def test_memory_limit_counts_every_process_of_the_session():
    """Four children each holding 120 MB: a 256 MB session keeps at most two of them (with cgroups)."""
    code = """
import os, select, time
kids, dead, holding = [], set(), set()
r, w = os.pipe()
for i in range(4):
    pid = os.fork()
    if pid == 0:
        block = b"x" * (120 * 1024 * 1024)
        os.write(w, bytes([i]))  # child i holds its 120 MB now
        time.sleep(60)
        os._exit(0)
    kids.append(pid)
deadline = time.time() + 40
while len(holding | {kids.index(k) for k in dead}) < 4 and time.time() < deadline:  # busy machines are slow
    if select.select([r], [], [], 0.2)[0]:
        holding |= set(os.read(r, 4))
    dead |= {k for k in kids if k not in dead and os.waitpid(k, os.WNOHANG) != (0, 0)}
time.sleep(0.5)
print(sum(1 for k in kids if k not in dead and os.waitpid(k, os.WNOHANG) == (0, 0)))
"""
    with SandboxPool(workers=1, spares=0, limits=Limits(memory_mb=256, timeout_s=60)) as p:
        if not p._cg.memory:
            pytest.skip(f"no memory cgroup here: {p.cgroups}")
        r = p.run(code, session_id="mem")
        assert r.status == Status.OK and int(r.stdout) <= 2, r


def test_disk_is_capped_per_session_not_per_file():
    code = """
written = 0
try:
    for i in range(100):
        open(f"/mnt/data/temp_processed_images/f{i}.bin", "wb").write(b"0" * (4 * 1024 * 1024))
        written += 4
except OSError as e:
    print("stopped", type(e).__name__)
print(written)
"""
    with SandboxPool(workers=1, spares=0, limits=Limits(disk_mb=16, max_file_mb=8)) as p:
        r = p.run(code, session_id="disk")
        assert "stopped" in r.stdout and int(r.stdout.split()[-1]) <= 16, r
        assert p.run("print('ok')", session_id="disk").stdout == "ok\n"


def test_input_image_is_never_modified_on_the_host(pool, tmp_path):
    image = tmp_path / "in.jpg"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(image)
    os.chmod(image, 0o600)

    def state(p: Path):
        st = p.stat()
        return hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_nlink

    before = state(image)
    code = """
import os
for action in (lambda: os.chmod(image_path, 0o777), lambda: open(image_path, "ab").write(b"x"),
               lambda: os.utime(image_path, (0, 0)), lambda: os.chown(image_path, 0, 0)):
    try:
        action(); print("CHANGED")
    except OSError:
        print("refused")
"""
    r = pool.run(code, [image], session_id="input")
    pool.close_session("input")
    assert "CHANGED" not in r.stdout and state(image) == before, r


def test_a_dead_pools_folder_another_process_removed_first_is_skipped(tmp_path):
    """Pools on one machine clean up dead pools' folders concurrently: one that vanishes between the listing and
    the look inside (here: listed, but nothing behind the name) is someone else's work done, not an error."""
    from thyme_core.sandbox import cgroups

    gone = tmp_path / f"{cgroups.PREFIX}999999999-dead"
    gone.symlink_to(tmp_path / "nothing")  # listed by the parent, ENOENT inside
    stale = tmp_path / f"{cgroups.PREFIX}999999998-dead"
    (stale / "session").mkdir(parents=True)
    cgroups._remove_stale(tmp_path, cgroups.PREFIX)
    assert not stale.exists()  # the other dead pool is still cleaned up
