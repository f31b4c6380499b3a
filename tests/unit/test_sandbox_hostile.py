"""Hostile output never reaches the host: one adversarial test per guarantee of the host's reading side
(thyme_core/sandbox/collect.py and channel.py), against the real bwrap sandbox."""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path

import pytest

from thyme_core.sandbox import Limits, SandboxPool, Status
from thyme_core.sandbox.launch import runtime_roots
from thyme_core.sandbox.types import MAX_ERROR_CHARS

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed (make setup)")
OUT = "/mnt/data/temp_processed_images"

# Writes a forged reply straight into the session's socket (the interpreter's only socket), then waits.
FORGE = """
import os, socket, struct, time
def forge(payload, drip=False):
    for fd in map(int, os.listdir("/proc/self/fd")):
        try:
            s = socket.socket(fileno=os.dup(fd))
            s.getpeername()
        except OSError:
            continue
        if drip:
            s.sendall(struct.pack(">I", 100))
            for _ in range(600):
                s.sendall(b" "); time.sleep(0.05)
        s.sendall(struct.pack(">I", len(payload)) + payload)
"""


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    with SandboxPool(workers=2, root=tmp_path_factory.mktemp("pool")) as p:
        yield p


def still_works(pool, session):
    assert pool.run("print('next')", session_id=session).stdout == "next\n"
    pool.close_session(session)


def test_a_link_swapped_in_for_an_output_is_never_followed(pool, tmp_path):
    secret = tmp_path / "host_secret.png"  # a host file the sandbox cannot see but a careless host would read
    secret.write_bytes(b"\x89PNG host secret")
    code = f"""
import os
from PIL import Image
Image.new("RGB", (64, 64)).save("{OUT}/real.png")
os.symlink({str(secret)!r}, "{OUT}/leak.png")
print("{OUT}/leak.png")
"""
    r = pool.run(code, session_id="link")
    assert r.status == Status.BAD_OUTPUT and "leak.png is a link" in r.error, r
    assert all(b"host secret" not in im.data for im in r.images)
    still_works(pool, "link")


def test_fifos_and_sockets_as_outputs_neither_block_nor_count(pool):
    code = f"""
import os, socket
os.mkfifo("{OUT}/fifo.png")
s = socket.socket(socket.AF_UNIX); s.bind("{OUT}/sock.jpg")
print("saved")
"""
    r = pool.run(code, session_id="fifo")
    assert r.status == Status.BAD_OUTPUT and "not a regular file" in r.error, r
    assert r.images == ()
    still_works(pool, "fifo")


SPINNER = """
import os, threading, time
count = [0]
def spin():
    while True:
        count[0] += 1
threading.Thread(target=spin, daemon=True).start()
if os.fork() == 0:  # a child process spinning too, writing its count where the session can read it
    n = 0
    while True:
        n += 1
        if n % 100000 == 0:  # written whole (then renamed): a freeze between truncate and write left it empty
            open("/mnt/data/temp_processed_images/child.tmp", "w").write(str(n))
            os.replace("/mnt/data/temp_processed_images/child.tmp", "/mnt/data/temp_processed_images/child.txt")
time.sleep(0.3)
print(count[0], open("/mnt/data/temp_processed_images/child.txt").read())
"""


@pytest.mark.parametrize("use_cgroups", [True, False], ids=["cgroup-freeze", "sigstop-fallback"])
def test_background_threads_and_children_are_frozen_between_runs(use_cgroups):
    import time

    with SandboxPool(workers=1, spares=0, use_cgroups=use_cgroups) as p:
        at_reply, child_at_reply = map(int, p.run(SPINNER, session_id="spinner").stdout.split())
        time.sleep(0.6)  # the spinners would count ~2x their first 0.3 s here if they kept running
        later = p.run("print(count[0])\nprint(open('/mnt/data/temp_processed_images/child.txt').read())",
                      session_id="spinner").stdout.split()
        assert int(later[0]) - at_reply < at_reply / 3, (at_reply, later)
        assert int(later[1]) - child_at_reply <= child_at_reply / 3 + 100_000, (child_at_reply, later)
        assert p.run("print('next')", session_id="spinner").stdout == "next\n"


def test_one_deadline_per_run_even_for_a_slow_drip_reply(pool):
    r = pool.run(FORGE + "forge(b'{}', drip=True)", session_id="drip", limits=Limits(timeout_s=1.5))
    assert r.status == Status.TIMEOUT, r
    still_works(pool, "drip")


@pytest.mark.parametrize("payload, why", [
    (b"[" * 200_000 + b"]" * 200_000, "nested past the parser's recursion limit"),
    (b'{"status": "ok", "stdout": {"a": 1}}', "wrong shape: stdout is not text"),
    (b'{"status": "weird", "stdout": "", "stderr": "", "error": "", "truncated": false}', "unknown status"),
    (b"\xff\xfe not json", "not JSON at all"),
])
def test_forged_replies_are_a_failed_run_never_a_host_exception(pool, payload, why):
    # Unparsable: the run fails (killed). Parsed but not this run's reply (no matching sequence number):
    # skipped, and the interpreter's own reply (nothing printed) is the result.
    r = pool.run(FORGE + f"forge({payload!r})\nimport time\ntime.sleep(0.5)", session_id="forged")
    assert r.status in (Status.KILLED, Status.NO_OUTPUT), (why, r)
    still_works(pool, "forged")


def test_a_forged_well_formed_reply_is_still_capped(pool):
    payload = ('{"status": "ok", "stdout": "' + "x" * 500_000 + '", "stderr": "", "error": "' + "e" * 100_000
               + '", "truncated": false, "seq": 1}').encode()  # seq 1: this session's first run
    r = pool.run(FORGE + f"forge({payload!r})\nimport time\ntime.sleep(0.5)", session_id="capped",
                 limits=Limits(max_output_chars=1000))
    assert len(r.stdout) <= 1000 and len(r.error) <= MAX_ERROR_CHARS, (len(r.stdout), len(r.error))
    still_works(pool, "capped")


def test_lone_surrogates_in_printed_text_become_valid_text(pool):
    r = pool.run("print('a\\ud800b')\nimport sys\nsys.stderr.write('\\udfff')\nraise ValueError('\\udc80')",
                 session_id="surrogate")
    assert r.status == Status.ERROR
    for text in (r.stdout, r.stderr, r.error):
        text.encode("utf-8")  # no UnicodeEncodeError anywhere downstream (Parquet, JSON, the tokenizer)
    assert r.stdout.startswith("a") and "b" in r.stdout


def test_error_text_is_capped(pool):
    r = pool.run("raise ValueError('v' * 1_000_000)", session_id="longerr")
    assert r.status == Status.ERROR and len(r.error) <= MAX_ERROR_CHARS and r.error.startswith("ValueError: vvv")


def _png(width: int, height: int, corrupt_crc: bool) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) ^ (0xFFFF if corrupt_crc else 0)
        return len(data).to_bytes(4, "big") + kind + data + crc.to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    raw = zlib.compress(b"".join(b"\x00" + b"\x00" * 3 * min(width, 64) for _ in range(min(height, 64))))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


@pytest.mark.parametrize("data, why", [
    (_png(64, 64, corrupt_crc=True), "broken CRCs"),
    (_png(100_000, 100_000, corrupt_crc=False), "a huge declared size"),
    (b"\xff\xd8\xff\xe0 not really a jpeg", "a header and nothing else"),
])
def test_broken_images_are_bad_output_with_a_reason(pool, data, why):
    code = f"open('{OUT}/out.png', 'wb').write({data!r})\nprint('{OUT}/out.png')"
    r = pool.run(code, session_id="badimg")
    assert r.status == Status.BAD_OUTPUT and "out.png" in r.error and r.images == (), (why, r)
    still_works(pool, "badimg")


def test_an_output_name_of_raw_bytes_is_bad_output():
    code = f"from PIL import Image\nImage.new('RGB', (64, 64)).save(b'{OUT}/\\xff\\xfe.png')\nprint('saved')"
    with SandboxPool(workers=1, spares=0) as p:
        r = p.run(code, session_id="bytes")
        assert r.status == Status.BAD_OUTPUT and "not valid UTF-8" in r.error, r
        r.error.encode("utf-8")


def test_folders_nested_thousands_deep_are_harmless_and_leave_nothing(pool):
    code = f"""
import os
os.chdir("{OUT}")
for _ in range(3000):
    os.mkdir("d"); os.chdir("d")
from PIL import Image
Image.new("RGB", (64, 64)).save("deep.png")
print("deep")
"""
    r = pool.run(code, session_id="deep")
    assert r.status in (Status.OK, Status.ERROR), r  # the tmpfs inode cap may stop it first: either is fine
    still_works(pool, "deep")
    assert not any(p.name.startswith("deep-") for p in pool.root.iterdir())


def test_nothing_fed_back_names_a_host_path(pool):
    code = "import numpy, PIL.Image\nprint(numpy.__file__)\nPIL.Image.open('/no/such.png')"
    r = pool.run(code, session_id="paths")
    assert r.status == Status.ERROR and "Traceback" in r.stderr
    for host in [str(pool.root), *runtime_roots()]:
        for text in (r.stdout, r.stderr, r.error):
            assert host not in text, (host, text)


def test_unisolated_mode_shows_thyme_paths_and_removes_deep_trees(tmp_path):
    with SandboxPool(isolation="none", root=tmp_path, spares=0) as p:
        code = "import os\nfor _ in range(1500):\n    os.mkdir('d'); os.chdir('d')\nprint(os.getcwd())"
        r = p.run(code, session_id="n")
        assert r.stdout.startswith("/mnt/data/temp_processed_images/d/d") and str(tmp_path) not in r.stdout, r
        p.close_session("n")
        assert list(Path(tmp_path).iterdir()) == []
    assert not os.path.exists(tmp_path / "n")
