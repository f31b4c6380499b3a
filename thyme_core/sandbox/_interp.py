"""The session interpreter's side of the sandbox: lock-down, limits, the request loop, running one block.

Standalone (stdlib only), like _worker.py, which loads it by path (no sys.path change) and forks sessions
that run `session_main`. Bind-mounted read-only next to the worker inside the sandbox.
"""

import builtins
import ctypes
import json
import os
import resource
import signal
import socket
import struct
import sys
import traceback

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x10000000, 0x20000000
CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET = 0x04000000, 0x08000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MAX_ERROR_CHARS = 2000
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 4, 24, 36, 38
SYS_CAPSET = 126  # x86_64
SESSIONS = "/sbx/sessions"
OUTPUT_DIR = "/mnt/data/temp_processed_images"
INPUT_DIR = "/mnt/data/input"
_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src, target, fstype, flags, data=None):
    enc = lambda s: s.encode() if s else None  # noqa: E731
    _check(_libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


# ---- framing: control socket is SEQPACKET (one JSON per packet), session socket is a length-prefixed stream


def send_msg(sock, obj):
    data = json.dumps(obj).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def recv_msg(sock, max_bytes=1 << 30):
    size = struct.unpack(">I", _recv_exact(sock, 4))[0]
    if size > max_bytes:
        raise ValueError(f"message of {size} bytes is over the {max_bytes} limit")
    return json.loads(_recv_exact(sock, size))


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("peer closed")
        buf += chunk
    return bytes(buf)


def _map_ids(uid, gid):
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _drop_capabilities():
    for cap in range(64):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    _check(_libc.syscall(SYS_CAPSET, header, (ctypes.c_uint32 * 6)()), "capset")


def _reap(statuses):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        statuses[pid] = status


# ---- session interpreter


def session_main(mode, msg, sess_fd):
    try:
        _lock_down(mode, msg, sess_fd)
        sock = socket.socket(fileno=sess_fd)
    except BaseException:
        traceback.print_exc()
        os._exit(3)
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    while True:
        try:
            req = recv_msg(sock)
        except (EOFError, OSError):
            os._exit(0)
        reply = run_code(namespace, req)
        reply["seq"] = req.get("seq")  # the host skips replies of other runs (a forger's leftovers)
        send_msg(sock, reply)
        _reap({})


def _lock_down(mode, msg, sess_fd):
    os.closerange(3, sess_fd)
    os.closerange(sess_fd + 1, 1 << 16)
    vm_bytes = _vm_bytes()
    if mode == "root":
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # shows this pid namespace only
    elif mode == "userns":
        # The kernel refuses a new proc mount in a user namespace while bwrap's /proc has read-only
        # overmounts, so /proc is hidden instead: the session sees no processes at all.
        _mount("tmpfs", "/proc", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if mode == "root":
        uid = int(msg["uid"])
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # leaving uid 0 clears every capability
        # A user namespace of its own: keyrings (and anything else kept per user namespace) are this
        # session's alone, even for a later session that gets the same uid.
        _check(_libc.unshare(CLONE_NEWUSER), "unshare user")
        _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # a uid change made /proc/self root's; the maps need it ours
        _map_ids(uid, uid)
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    if mode != "none":
        _drop_capabilities()
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.setsid()
    _set_limits(msg["limits"], vm_bytes)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.chdir(msg["cwd"])


def _vm_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _set_limits(limits, vm_bytes):
    mb = 1024 * 1024
    used = _cpu_used()
    for res, value in (
        (resource.RLIMIT_AS, vm_bytes + limits["memory_mb"] * mb),
        (resource.RLIMIT_CPU, used + limits["cpu_s"] * 100),  # hard cap for the whole session
        (resource.RLIMIT_NPROC, limits["max_processes"]),
        (resource.RLIMIT_FSIZE, limits["max_file_mb"] * mb),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NOFILE, 256),
    ):
        resource.setrlimit(res, (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG instead of killing
    # The interpreter is pid 1 of its pid namespace, where default-action signals are dropped: catch it.
    signal.signal(signal.SIGXCPU, _on_cpu_limit)


class CpuLimitExceeded(BaseException):
    """Raised in the model's code by SIGXCPU (RLIMIT_CPU); BaseException so `except Exception` misses it."""


def _on_cpu_limit(signum, frame):
    raise CpuLimitExceeded("CPU time limit exceeded")


def _cpu_used():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return int(usage.ru_utime + usage.ru_stime) + 1


class _Capped:
    """A text stream that keeps the first `cap` characters and counts the rest."""

    def __init__(self, cap):
        self.cap, self.parts, self.size, self.truncated = cap, [], 0, False

    def write(self, text):
        text = str(text)
        room = self.cap - self.size
        if len(text) > room:
            self.truncated = True
            text = text[: max(room, 0)]
        self.parts.append(text)
        self.size += len(text)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False

    def getvalue(self):
        return "".join(self.parts)


def run_code(namespace, req):
    """Execute one code block in the session namespace; never raises."""
    cap = req["max_output_chars"]
    out, err = _Capped(cap), _Capped(cap)
    soft = _cpu_used() + req["cpu_s"]
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    resource.setrlimit(resource.RLIMIT_CPU, (min(soft, hard), hard))
    if req.get("image_path"):
        namespace["image_path"] = req["image_path"]
    status, error = "ok", ""
    sys.stdout, sys.stderr = out, err
    try:
        exec(compile(req["code"], "<code>", "exec"), namespace)
    except SystemExit:
        pass
    except BaseException as exc:  # the model's own error, reported back as the model should see it
        status, error = _classify(exc), f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        err.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next)))
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    return {
        "status": status,
        "error": error,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
        "truncated": out.truncated or err.truncated,
    }


def _classify(exc):
    if isinstance(exc, CpuLimitExceeded):
        return "timeout"
    if isinstance(exc, MemoryError) or "Insufficient memory" in str(exc) or "Failed to allocate" in str(exc):
        return "memory"
    return "error"
