"""The process that runs inside the sandbox: a warm template that forks one interpreter per session.

Standalone on purpose (stdlib + numpy / PIL / cv2 only): it is bind-mounted read-only into the bubblewrap
sandbox as a single file, so no project code is visible in there. Started as
    python -I _worker.py MODE CONTROL_FD
MODE is `root` (bwrap as real root, no user namespace: sessions drop to their own uid), `userns` (bwrap as
an ordinary user: sessions get a nested user namespace) or `none` (no isolation, plain fork).

Template: imports and warms numpy / PIL / cv2 once, then serves `spawn`, `kill`, `stop` and `cont` requests
on a SEQPACKET control socket. `spawn` forks an intermediate child that joins the session's cgroups (the host
passes their open `cgroup.procs` files), enters new mount, pid, network, IPC and UTS namespaces (and a user
namespace when unprivileged), mounts the session's read-only inputs and a size-capped tmpfs as its output
folder, sends the host a descriptor of that folder, and forks the session interpreter (pid 1 of its pid
namespace), then exits; the template is a child subreaper, so it adopts, reaps and can kill the interpreter.
Killing pid 1 of a pid namespace kills everything in it, which is how a timeout stops a whole session at
once. `stop` / `cont` SIGSTOP / SIGCONT the interpreter and every process under it (the freeze used where
no cgroup freezer is available). In root mode the interpreter drops to its own uid and then enters a user
namespace of its own (its own keyrings), with every capability dropped there too.
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


def warm_up():
    """Import and exercise what model code uses, so every forked session starts warm."""
    import io
    import math  # noqa: F401

    import cv2
    import numpy as np
    from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps  # noqa: F401

    cv2.setNumThreads(1)
    for alias in ("cv", "cv3", "cv4"):
        sys.modules[alias] = cv2
    Image.init()
    arr = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    img = Image.fromarray(arr).crop((8, 8, 72, 72)).resize((128, 128), Image.LANCZOS)
    for fmt in ("JPEG", "PNG"):
        buf = io.BytesIO()
        img.save(buf, fmt)
        Image.open(io.BytesIO(buf.getvalue())).load()
    cv2.imdecode(cv2.imencode(".jpg", cv2.resize(arr, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))[1], 1)


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


# ---- template


def template_main(mode, ctl_fd):
    ctl = socket.socket(fileno=ctl_fd)
    warm_up()
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "subreaper")
    statuses = {}
    ctl.send(json.dumps({"ready": True, "pid": os.getpid()}).encode())
    while True:
        data, fds, _flags, _addr = socket.recv_fds(ctl, 1 << 16, 8)
        if not data:
            return
        _reap(statuses)
        msg = json.loads(data)
        out_fd = None
        if msg["op"] == "spawn":
            reply, out_fd = _spawn(mode, msg, fds, ctl)
        elif msg["op"] == "kill":
            reply = {"status": _kill(msg["pid"], statuses)}
        elif msg["op"] in ("stop", "cont"):
            reply = {"stopped": _signal_tree(msg["pid"], msg["op"] == "stop")}
        else:
            return
        socket.send_fds(ctl, [json.dumps(reply).encode()], [out_fd] if out_fd is not None else [])
        if out_fd is not None:
            os.close(out_fd)


def _reap(statuses):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        statuses[pid] = status


def _kill(pid, statuses):
    """SIGKILL the session interpreter (in isolated modes that is its whole pid namespace); its wait status."""
    if pid not in statuses:
        for fn in (os.killpg, os.kill):
            try:
                fn(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            statuses[pid] = os.waitpid(pid, 0)[1]
        except ChildProcessError:
            statuses[pid] = 0
    status = statuses.pop(pid)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _descendants(root):
    """`root` and every process under it (by parent links in /proc: orphans re-parent to the session's
    pid 1, so nothing started in the session escapes this walk)."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _state(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return b"X"


def _signal_tree(pid, stop):
    """SIGSTOP (or SIGCONT) the session interpreter and all under it, until a pass finds nothing new and
    every process stopped; False when the tree would not hold still (the host then kills the session)."""
    sig = signal.SIGSTOP if stop else signal.SIGCONT
    for _ in range(200):
        tree = _descendants(pid)
        for p in tree:
            try:
                os.kill(p, sig)
            except OSError:
                pass
        if not stop:
            return True
        if all(_state(p) in (b"T", b"t", b"Z", b"X") for p in _descendants(pid)):
            return True
    return False


def _spawn(mode, msg, fds, ctl):
    """Fork the session interpreter; its pid (in the template's namespace) and its output folder's fd."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    child = os.fork()
    if child == 0:
        try:
            ctl.close()
            ours.close()
            _intermediate(mode, msg, fds, theirs)
        except BaseException:
            traceback.print_exc()
        os._exit(1)
    for fd in fds:
        os.close(fd)
    theirs.close()
    try:
        ours.settimeout(30)
        answer, got, _flags, _addr = socket.recv_fds(ours, 4096, 1)
    except OSError as exc:
        answer, got = f"spawn failed: {exc}".encode(), []
    ours.close()
    os.waitpid(child, 0)
    if not answer.isdigit():
        for fd in got:
            os.close(fd)
        return {"error": answer.decode(errors="replace") or "spawn failed"}, None
    return {"pid": int(answer)}, (got[0] if got else None)


def _intermediate(mode, msg, fds, report):
    """Join the session's cgroups, enter fresh namespaces, mount this session's folders, fork the
    interpreter, report its pid and the output folder's descriptor."""
    sess_fd, cgroup_fds = fds[0], fds[1:]
    try:
        for fd in cgroup_fds:  # the interpreter and all it starts are born in the session's cgroups
            os.write(fd, b"0")
            os.close(fd)
        out_fd = None
        if mode != "none":
            _enter_namespaces(mode, msg)
            out_fd = os.open(OUTPUT_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        pid = os.fork()
    except BaseException as exc:
        report.send(f"{type(exc).__name__}: {exc}".encode())
        raise
    if pid == 0:
        report.close()
        if out_fd is not None:
            os.close(out_fd)
        session_main(mode, msg, sess_fd)
    socket.send_fds(report, [str(pid).encode()], [out_fd] if out_fd is not None else [])
    os._exit(0)


def _enter_namespaces(mode, msg):
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    _check(_libc.unshare(flags | (CLONE_NEWUSER if mode == "userns" else 0)), "unshare")
    if mode == "userns":
        _map_ids(uid, gid)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    owner = int(msg["uid"]) if mode == "root" else uid
    size = f"size={int(msg['limits']['disk_mb'])}m,nr_inodes=4096,mode=0755,uid={owner},gid={owner}"
    _mount("tmpfs", OUTPUT_DIR, "tmpfs", MS_NOSUID | MS_NODEV, size)
    _mount(f"{SESSIONS}/{msg['key']}/in", INPUT_DIR, None, MS_BIND)
    _mount(None, INPUT_DIR, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    # Every other session's folders disappear under an empty read-only tmpfs.
    _mount("tmpfs", "/sbx", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _map_ids(uid, gid):
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _drop_capabilities():
    for cap in range(64):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    _check(_libc.syscall(SYS_CAPSET, header, (ctypes.c_uint32 * 6)()), "capset")


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


if __name__ == "__main__":
    template_main(sys.argv[1], int(sys.argv[2]))
