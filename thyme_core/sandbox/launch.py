"""How the sandbox's template process is started: the bubblewrap command line, or a plain subprocess.

The bwrap sandbox sees only: /usr (with the /lib, /lib64, /bin symlinks of a merged-/usr system), the Python
runtime roots (interpreter prefix, virtualenv, the site folders of numpy / PIL / cv2), the worker script, a
minimal /dev, a private /proc, and the pool's sessions folder (which each session then hides behind an empty
tmpfs after mounting its own input folder and output tmpfs). No /etc (except the loader cache), no /home, no
/tmp, no network. Each session then gets network, IPC and UTS namespaces of its own (_worker.py).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from thyme_core.base.errors import ThymeError
from thyme_core.sandbox import _interp, _worker  # noqa: F401  (run inside the sandbox; imported here so they
#                                                  are in the import closure that names a stage's code version)

WORKER = Path(__file__).with_name("_worker.py")
WORKER_IN_SANDBOX = "/opt/thyme_sandbox/worker.py"
INTERP, INTERP_IN_SANDBOX = WORKER.with_name("_interp.py"), "/opt/thyme_sandbox/_interp.py"
SANDBOX_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/nonexistent",
    "LANG": "C.UTF-8",
    "TMPDIR": "/mnt/data/temp_processed_images",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
ISOLATIONS = ("bwrap", "none")


def find_bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise ThymeError(
            "bubblewrap (bwrap) is not installed, so model code cannot be isolated. Install it with "
            "`make setup` (infra/setup-system.sh) or your package manager, or explicitly accept running "
            "model code unisolated with isolation='none' (CLI: --unsafe-no-isolation)."
        )
    return path


def worker_mode(isolation: str) -> str:
    """`root`: bwrap as real root, sessions drop to their own uid; `userns`: unprivileged; `none`."""
    if isolation not in ISOLATIONS:
        raise ThymeError(f"unknown isolation {isolation!r}; choose one of {', '.join(ISOLATIONS)}")
    if isolation == "none":
        return "none"
    return "root" if os.geteuid() == 0 else "userns"


def template_argv(isolation: str, sessions_root: Path, ctl_fd: int) -> list[str]:
    mode = worker_mode(isolation)
    if mode == "none":
        return [sys.executable, "-I", str(WORKER), mode, str(ctl_fd)]
    # No --die-with-parent: it fires when the launching *thread* ends (template.py says why); the template
    # exits when its control socket closes instead.
    argv = [find_bwrap(), "--new-session", "--clearenv"]
    if mode == "root":
        # No user namespace: the template keeps only what it needs to mount and to switch each session
        # to its own uid; sessions then hold no capability at all.
        argv += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        argv += ["--cap-drop", "ALL"]
        for cap in ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_KILL"):
            argv += ["--cap-add", cap]
    else:
        argv += ["--unshare-all", "--unshare-user"]
    for key, value in SANDBOX_ENV.items():
        argv += ["--setenv", key, value]
    argv += _filesystem_args(sessions_root)
    argv += [python_in_sandbox(), "-I", WORKER_IN_SANDBOX, mode, str(ctl_fd)]
    return argv


def python_in_sandbox() -> str:
    """The interpreter by a path the sandbox can see: its folder's links resolved (a worktree's `.venv` is often
    a link to another checkout's, and only resolved runtime roots are bound), its own name kept (a
    virtualenv's `python` link must be run by that name for the venv to apply)."""
    return os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))


def _filesystem_args(sessions_root: Path) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/lib", "/lib64", "/bin", "/sbin", "/lib32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    if os.path.exists("/etc/ld.so.cache"):
        args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    made: set[str] = set()
    for root in runtime_roots():
        args += _parents(root, made) + ["--ro-bind", root, root]
    args += _parents(WORKER_IN_SANDBOX, made) + ["--ro-bind", str(WORKER), WORKER_IN_SANDBOX]
    args += ["--ro-bind", str(INTERP), INTERP_IN_SANDBOX]
    args += ["--dev", "/dev", "--proc", "/proc"]
    args += ["--dir", "/mnt/data/temp_processed_images", "--dir", "/mnt/data/input"]
    args += ["--bind", str(sessions_root), "/sbx/sessions", "--chdir", "/"]
    return args


def _parents(path: str, made: set[str]) -> list[str]:
    """World-traversable parent folders (bwrap would otherwise create them 0700, unreadable after setuid)."""
    out = []
    parts = Path(path).parent.parts
    for i in range(2, len(parts) + 1):
        parent = str(Path(*parts[:i]))
        if parent not in made and not parent.startswith("/usr"):
            made.add(parent)
            out += ["--perms", "0755", "--dir", parent]
    return out


def runtime_roots() -> list[str]:
    """Folders the interpreter and the pre-imported libraries load from, outside /usr, outermost first."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    candidates.add(str(Path(os.path.realpath(sys.executable)).parent.parent))
    for name in ("numpy", "PIL", "cv2"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ThymeError(f"the sandbox needs {name} installed in this Python ({sys.executable})")
        candidates.add(str(Path(spec.origin).resolve().parent.parent))
    roots: list[str] = []
    for path in sorted({os.path.realpath(c) for c in candidates}, key=len):
        if path.startswith("/usr/") or path == "/usr":
            continue
        if not any(path == r or path.startswith(r + "/") for r in roots):
            roots.append(path)
    return roots
