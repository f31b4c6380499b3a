"""Code versions for run keys: the hash of all the code a stage's result depends on.

A stage's key holds the code version of its entry modules: the sha256 of their source and of every thyme_core
module they import, transitively, found by reading the import statements with `ast` (nothing is listed by hand,
so nothing drifts, and a moved file is simply followed). Importing `thyme_core.a.b` runs `thyme_core/a/__init__.py`
too, so package inits count; imports inside functions count as well (a lazy import is still code the stage runs).
Data files a stage reads (a DeepSpeed config, a prompt) are passed as `data` and hashed with the code.

Not seen: third-party packages (pinned in pyproject.toml), and modules reached by a name computed at run time
(`importlib.import_module(f"...{x}")`); a stage that does that passes the target as another entry.
"""

from __future__ import annotations

import ast
import hashlib
import threading
from functools import lru_cache
from pathlib import Path
from typing import Iterable

PACKAGE = "thyme_core"
ROOT = Path(__file__).resolve().parents[1]


def _file_of(module: str, root: Path) -> Path | None:
    """The source file of a thyme_core module name, or None (a name in a module, or outside thyme_core)."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_of(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, root: Path) -> set[str]:
    """Module names this file imports (absolute or relative), including `from pkg import submodule`."""
    here = _module_of(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_closure(entries: Iterable[str], root: Path = ROOT) -> list[Path]:
    """Every thyme_core source file the entry modules import, transitively, sorted."""
    seen: dict[str, Path] = {}
    todo = [m for e in entries for m in _with_parents(e)]
    missing = [e for e in entries if _file_of(e, root) is None]
    if missing:
        raise ValueError(f"not a thyme_core module: {', '.join(missing)}")
    while todo:
        module = todo.pop()
        path = _file_of(module, root)
        if path is None or module in seen:
            continue
        seen[module] = path
        for name in _imported(path, root):
            todo.extend(m for m in _with_parents(name) if m not in seen)
    return sorted(set(seen.values()))


_LOCK = threading.Lock()


@lru_cache(maxsize=64)
def _cached(entries: tuple[str, ...], data: tuple[str, ...], root: str) -> str:
    base = Path(root)
    h = hashlib.sha256()
    for path in import_closure(entries, base):
        h.update(path.relative_to(base).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for item in data:
        h.update(b"data\0" + Path(item).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def code_version(*entries: str, data: Iterable[str | Path] = (), root: Path = ROOT) -> str:
    """16 hex digits naming the code (and data files) a stage's result depends on.

    Cached per process: the code a process runs does not change under it (tests pass another `root`). One
    thread at a time: CPython 3.11's ast.parse is not safe in concurrent threads ("AST constructor recursion
    depth mismatch", seen when a flow's shard tasks, threads, asked for the key at once).
    """
    with _LOCK:
        return _cached(tuple(entries), tuple(str(Path(d).resolve()) for d in data), str(Path(root).resolve()))
