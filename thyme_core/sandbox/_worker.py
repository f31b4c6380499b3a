"""The process that runs inside the sandbox: a warm template that forks one interpreter per session.

Standalone on purpose (stdlib + numpy / PIL / cv2 only): it and _interp.py (the session interpreter's side,
loaded by path) are bind-mounted read-only into the bubblewrap sandbox, so no project code is visible in
there. Started as
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
no cgroup freezer is available). When its control socket closes (the host exited, or died without any
clean-up) the template SIGKILLs every session before it exits: stopped between runs, a session would never
notice on its own. In root mode the interpreter drops to its own uid and then enters a user
namespace of its own (its own keyrings), with every capability dropped there too.
"""

import importlib.util
import json
import os
import signal
import socket
import sys
import traceback

_spec = importlib.util.spec_from_file_location("_thyme_interp", os.path.join(os.path.dirname(__file__), "_interp.py"))
_interp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_interp)
_check, _mount, _libc, _map_ids, session_main = _interp._check, _interp._mount, _interp._libc, _interp._map_ids, \
    _interp.session_main
_reap = _interp._reap
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID = _interp.CLONE_NEWNS, _interp.CLONE_NEWUSER, _interp.CLONE_NEWPID
CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET = _interp.CLONE_NEWUTS, _interp.CLONE_NEWIPC, _interp.CLONE_NEWNET
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = _interp.MS_RDONLY, _interp.MS_NOSUID, _interp.MS_NODEV, _interp.MS_NOEXEC
MS_BIND, MS_REMOUNT, MS_REC, MS_PRIVATE = _interp.MS_BIND, _interp.MS_REMOUNT, _interp.MS_REC, _interp.MS_PRIVATE
SESSIONS, OUTPUT_DIR, INPUT_DIR = _interp.SESSIONS, _interp.OUTPUT_DIR, _interp.INPUT_DIR
PR_SET_CHILD_SUBREAPER = 36


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


# ---- template


def template_main(mode, ctl_fd):
    ctl = socket.socket(fileno=ctl_fd)
    warm_up()
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "subreaper")
    statuses = {}
    ctl.send(json.dumps({"ready": True, "pid": os.getpid()}).encode())
    try:
        _serve(mode, ctl, statuses)
    finally:
        _end_sessions()


def _end_sessions():
    """The host is gone (its control socket closed, with or without a goodbye) or the loop broke: every
    session goes with the template. A session is stopped between runs, so it would never notice its own
    socket closing; it would sleep for ever, holding its cgroup and its uid."""
    me = os.getpid()
    for pid in _descendants(me):
        if pid != me:
            for fn in (os.killpg, os.kill):
                try:
                    fn(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _serve(mode, ctl, statuses):
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
        ours.settimeout(20)  # under the host's CONTROL_TIMEOUT_S, so the template answers first
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


if __name__ == "__main__":
    template_main(sys.argv[1], int(sys.argv[2]))
