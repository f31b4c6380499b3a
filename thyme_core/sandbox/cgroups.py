"""Per-session cgroups: total memory and process count across all of a session's processes, and a freezer.

What a machine allows is detected once per pool (`detect`) and reported (`SandboxPool.cgroups`, the CLI's
`thyme sandbox check`):
- cgroup v2 core (any v2 hierarchy we can write, pure or the hybrid's /sys/fs/cgroup/unified): `cgroup.freeze`
  freezes a session between runs and while its outputs are collected; v2's `memory.max` and `pids.max` when
  those controllers can be enabled below our own cgroup (the parent must delegate them to us).
- cgroup v1 `memory` / `pids` hierarchies we can write (a hybrid machine keeps its controllers there):
  `memory.limit_in_bytes` and `pids.max`.
Each pool makes one folder per hierarchy below the cgroup the host process is in (so it stays inside
whatever limits the host already has), and one sub-folder per session interpreter. The host opens each
session folder's `cgroup.procs` and passes the open files to the sandbox's template, whose fork for the
session writes "0" to them before it forks the interpreter: the kernel checks the permission of the opener
(the host), so this works from inside bubblewrap's namespaces, and the interpreter is born inside.

Without a writable cgroup the pool falls back (README "Sandbox"): memory to RLIMIT_AS per process, the process
count to RLIMIT_NPROC (per uid), the freeze to SIGSTOP of the session's process tree (template `stop`).
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PREFIX = "thyme-sandbox-"  # pool folders: PREFIX + the host's pid + a random token + its PID namespace
FREEZE_TIMEOUT_S = 5.0


@dataclass
class Support:
    """Which per-session controls this machine gives the pool, and where."""

    v2: Path | None = None  # the pool's folder in a v2 hierarchy (freeze, and memory/pids when delegated)
    v2_controllers: tuple[str, ...] = ()
    v1: dict[str, Path] = field(default_factory=dict)  # controller -> the pool's folder in that v1 hierarchy

    @property
    def freeze(self) -> bool:
        return self.v2 is not None

    @property
    def memory(self) -> bool:
        return "memory" in self.v2_controllers or "memory" in self.v1

    @property
    def pids(self) -> bool:
        return "pids" in self.v2_controllers or "pids" in self.v1

    def report(self) -> dict:
        """What holds per session here, for logs and the README's table."""
        return {"freeze": "cgroup v2" if self.freeze else "SIGSTOP of the process tree",
                "memory": self._where("memory") or "RLIMIT_AS per process",
                "pids": self._where("pids") or "RLIMIT_NPROC per uid"}

    def _where(self, ctl: str) -> str:
        return "cgroup v2" if ctl in self.v2_controllers else ("cgroup v1" if ctl in self.v1 else "")

    def remove(self) -> None:
        for folder in [self.v2, *self.v1.values()]:
            if folder is not None:
                _rmdir(folder)


def detect(enabled: bool = True) -> Support:
    """Make the pool's cgroup folders where the machine lets us; an empty Support where it does not."""
    name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{_pid_namespace()}"
    support = Support()
    if not enabled or not ROOT.is_dir():
        return support
    own = _own_cgroups()
    v2_root = ROOT if (ROOT / "cgroup.controllers").exists() else ROOT / "unified"
    if "" in own and (v2_root / "cgroup.controllers").exists():
        folder = _make(v2_root / own[""].lstrip("/") / name)
        if folder is not None and (folder / "cgroup.freeze").exists():
            support.v2 = folder
            support.v2_controllers = _delegate(folder, ("memory", "pids"))
        elif folder is not None:
            _rmdir(folder)
    for ctl in ("memory", "pids"):
        if ctl not in support.v2_controllers and ctl in own and (ROOT / ctl / "cgroup.procs").exists():
            folder = _make(ROOT / ctl / own[ctl].lstrip("/") / name)
            if folder is not None:
                support.v1[ctl] = folder
    return support


class SessionGroup:
    """One interpreter's cgroups: created before it starts, removed after it is reaped."""

    def __init__(self, support: Support, key: str, memory_mb: int, max_processes: int):
        self.support, self.key = support, key
        self.folders: list[Path] = []
        self.v2: Path | None = None
        for base, is_v2 in ([(support.v2, True)] if support.v2 else []) + [(p, False) for p in support.v1.values()]:
            folder = base / key
            folder.mkdir(exist_ok=True)
            self.folders.append(folder)
            if is_v2:
                self.v2 = folder
        limits = {"memory.max": memory_mb * 2**20, "pids.max": max_processes}
        for ctl, value in limits.items():
            if ctl.split(".")[0] in support.v2_controllers and self.v2 is not None:
                (self.v2 / ctl).write_text(str(value))
        if "memory" in support.v1:
            # Swap counted too where the kernel accounts it (memsw), else only resident memory.
            (support.v1["memory"] / key / "memory.limit_in_bytes").write_text(str(memory_mb * 2**20))
        if "pids" in support.v1:
            (support.v1["pids"] / key / "pids.max").write_text(str(max_processes))

    def procs_fds(self) -> list[int]:
        """Open `cgroup.procs` of each folder, for the template's fork to join (the caller closes them)."""
        return [os.open(folder / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC) for folder in self.folders]

    def freeze(self, frozen: bool) -> bool:
        """Freeze (or thaw) every process of the session; True once the kernel says all are frozen."""
        if self.v2 is None:
            return False
        (self.v2 / "cgroup.freeze").write_text("1" if frozen else "0")
        if not frozen:
            return True
        deadline = time.monotonic() + FREEZE_TIMEOUT_S
        events = self.v2 / "cgroup.events"
        while time.monotonic() < deadline:
            if "frozen 1" in events.read_text():
                return True
            time.sleep(0.0002)
        return False

    def memory_exceeded(self) -> bool:
        """Whether the kernel killed a process of the session for going over its memory limit."""
        try:
            if self.v2 is not None and "memory" in self.support.v2_controllers:
                events = dict(line.split() for line in (self.v2 / "memory.events").read_text().splitlines())
                return int(events.get("oom_kill", 0)) > 0
            if "memory" in self.support.v1:
                text = (self.support.v1["memory"] / self.key / "memory.oom_control").read_text()
                counts = dict(line.split() for line in text.splitlines())
                return int(counts.get("oom_kill", 0)) > 0
        except (OSError, ValueError):
            pass
        return False

    def remove(self) -> None:
        for folder in self.folders:
            _rmdir(folder)


def _own_cgroups() -> dict[str, str]:
    """controller ("" for v2) -> this process's cgroup path."""
    out = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        _id, ctls, path = line.split(":", 2)
        for ctl in ctls.split(",") if ctls else [""]:
            out[ctl] = path
    return out


def _make(folder: Path) -> Path | None:
    _remove_stale(folder.parent, PREFIX)
    try:
        folder.mkdir(exist_ok=True)
        return folder
    except OSError:
        return None


def _pid_namespace() -> str:
    """This process's PID namespace (the inode of /proc/self/ns/pid): a pid means something only inside it."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def _remove_stale(parent: Path, prefix: str) -> None:
    """Pool folders left by a process that died without closing its pool (named <prefix><pid>-<token>-<pidns>;
    the pid first, as older versions named them and parse them). Only this PID namespace's folders are judged:
    a pool in another namespace (a test's private cluster, a container sharing the cgroup tree) has a pid that
    /proc here does not show although it is alive."""
    try:
        entries = [p for p in parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    here = _pid_namespace()
    for folder in entries:
        parts = folder.name[len(prefix):].split("-")
        pid, namespace = parts[0], parts[2] if len(parts) == 3 else here  # (older names: no namespace)
        if namespace == here and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            try:
                sessions = [p for p in folder.iterdir() if p.is_dir()]
            except OSError:
                continue  # another process cleaning up at the same time removed it first
            for session in sessions:
                _kill_members(session)
                _rmdir(session)
            _rmdir(folder)


def _kill_members(folder: Path) -> None:
    """SIGKILL what is still in a dead pool's session folder: sessions that outlived their host (a session is
    stopped between runs, so it never notices its host is gone), which would keep the folder from going and
    every new pool waiting on it. Their pool's owner is dead and in this PID namespace, so they are ours."""
    try:
        pids = [int(x) for x in (folder / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return
    for pid in pids:
        if pid > 1 and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _delegate(folder: Path, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """Enable the controllers the parent hands down to the pool's folder, for its session folders."""
    try:
        available = (folder / "cgroup.controllers").read_text().split()
    except OSError:
        return ()
    got = []
    for ctl in wanted:
        if ctl in available:
            try:
                (folder / "cgroup.subtree_control").write_text(f"+{ctl}")
                got.append(ctl)
            except OSError:
                pass
    return tuple(got)


def _rmdir(folder: Path) -> None:
    """Remove a cgroup folder; its processes may take a moment to be gone after a kill."""
    for _ in range(200):
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.005)
