"""The data home: one folder that holds everything a pipeline run produces.

Resolution order: an explicit `--home DIR`, else $THYME_HOME, else ~/.local/share/thyme (or
$XDG_DATA_HOME/thyme). Every path stored in the catalog is relative to the home root, so a home can be
moved, synced to S3 and pulled elsewhere without rewriting a single row.

Layout:
    images/ab/<sha256>.<ext>   content-addressed image store (written once, never modified)
    shards/<table>/...         Parquet parts, one per finished shard (see prepare.py)
    catalog.duckdb             DuckDB catalog: views over the Parquet parts
    tmp/                       staging area for atomic writes (same filesystem as everything above)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "THYME_HOME"


def default_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "thyme"


@dataclass(frozen=True)
class DataHome:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def shards_dir(self) -> Path:
        return self.root / "shards"

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    def ensure(self) -> "DataHome":
        for d in (self.root, self.images_dir, self.shards_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def relative(self, path: Path) -> str:
        """A path inside the home as the catalog stores it (POSIX, relative to the root)."""
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    def absolute(self, rel: str) -> Path:
        return self.root / rel


def resolve_home(arg: str | os.PathLike | None = None) -> DataHome:
    if arg:
        root = Path(arg)
    elif os.environ.get(HOME_ENV):
        root = Path(os.environ[HOME_ENV])
    else:
        root = default_home()
    return DataHome(root.expanduser().absolute())
