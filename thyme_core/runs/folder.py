"""Run identity, keys and write-once run folders (SFT: runs/sft/stage<N>/<key>/, RL: runs/rl/<key>/).

A run's key is the hash of its parts: what it reads (a dataset hash), `config_hash()`, and the code version of
its entry modules (base/versioning). The folder is written once, when the run is first prepared; DONE (with
the steps it finished) marks a finished run, which is never run again; LATEST in the stage's folder names the
newest finished run. Paths inside a key are home-relative, so the same run on another worker has the same key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from thyme_core.base.fsio import atomic_write_bytes
from thyme_core.base.home import DataHome

DONE = "DONE"


def identity(path: str | Path, home: DataHome) -> str:
    """A path as a key sees it: relative to the home when inside it, else absolute."""
    try:
        return home.relative(Path(path))
    except ValueError:
        return str(Path(path).resolve())


def run_key(parts: list[str]) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:16]


def write_once(run_dir: Path, files: dict[str, bytes], marker: str = DONE) -> bool:
    """Create the run folder with `files` unless `marker` is already there; True when written."""
    run_dir = Path(run_dir)
    if (run_dir / marker).exists():
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write_bytes(run_dir / name, data)
    return True


def steps_done(run_dir: Path) -> int:
    """The steps DONE records (0: not finished)."""
    done = Path(run_dir) / DONE
    return json.loads(done.read_text()).get("steps", 0) if done.exists() else 0


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / DONE).exists()


def mark_done(run_dir: Path, steps: int) -> None:
    atomic_write_bytes(Path(run_dir) / DONE, json.dumps({"steps": steps}).encode())


def set_latest(stage_dir: Path, key: str) -> None:
    atomic_write_bytes(Path(stage_dir) / "LATEST", key.encode())


def latest(stage_dir: Path) -> str | None:
    path = Path(stage_dir) / "LATEST"
    return path.read_text().strip() if path.exists() else None
