"""What a dataset version contains, and its manifest.

A version is the catalog content of a data home, path for path:
    shards/<table>/<key>/*.parquet   every published Parquet part (the `_schema/` typed empty parts included)
    images/<ab>/<sha256>.<ext>       the whole image store
Left out: `*.run.parquet` parts but their typed empty `_schema/` one (facts of the run that made a shard:
timings, host; so two runs that made the same content give the same version), catalog.duckdb (derived: its views are re-declared from sql/schema.sql on
pull), tmp/ (staging),
anything else in the home (e.g. sources/), and any name starting with '.' (staging debris).

The manifest lists, per file, its path relative to the home root, sha256, size, and for Parquet its row
count and schema. It is canonical JSON (sorted keys, no whitespace) addressed by the sha256 of its bytes,
so the same content always gives the same version hash, whatever the name, tag or time of the push.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq

from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.versions.store import parallel_map

FORMAT = "thyme-version/1"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the home root, POSIX
    sha256: str
    bytes: int
    rows: int | None = None  # Parquet only
    schema: list[list[str]] | None = None  # Parquet only: [[column, arrow type], ...]


@dataclass(frozen=True)
class Manifest:
    files: tuple[FileEntry, ...]
    kind: str = "dataset"  # or "model" (an HF folder), "checkpoint" (a step checkpoint folder): folders.py

    def to_bytes(self) -> bytes:
        doc = {"format": FORMAT, "files": [_compact(asdict(f)) for f in self.files]}
        if self.kind != "dataset":  # dataset manifests keep the bytes (and hashes) they always had
            doc["kind"] = self.kind
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes, expect_sha256: str | None = None) -> "Manifest":
        if expect_sha256 is not None and hashlib.sha256(data).hexdigest() != expect_sha256:
            raise ThymeError(f"manifest {expect_sha256[:12]}: checksum mismatch (the stored manifest is corrupted)")
        doc = json.loads(data)
        if doc.get("format") != FORMAT:
            raise ThymeError(f"manifest format {doc.get('format')!r} is not {FORMAT!r}")
        return cls(tuple(FileEntry(**f) for f in doc["files"]), doc.get("kind", "dataset"))

    def summary(self) -> dict:
        """Totals shown by `thyme data versions`: files, bytes, images, rows per Parquet part name."""
        rows: dict[str, int] = {}
        if self.kind != "dataset":
            return {"files": len(self.files), "bytes": sum(f.bytes for f in self.files), "images": 0, "rows": {},
                    "kind": self.kind}
        for f in self.files:
            if f.rows is not None:
                table = f.path.split("/")[1]
                key = f"{table}/{Path(f.path).stem}"
                rows[key] = rows.get(key, 0) + f.rows
        images = sum(1 for f in self.files if f.path.startswith("images/"))
        return {"files": len(self.files), "bytes": sum(f.bytes for f in self.files), "images": images, "rows": rows}


def _compact(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def version_paths(home: DataHome) -> list[Path]:
    """The files of the home that make up its version, sorted by relative path."""
    found = []
    def content(folder: str, name: str) -> bool:  # run facts stay local; their typed empty part keeps the view
        return name.endswith(".parquet") and (not name.endswith(".run.parquet") or Path(folder).name == "_schema")

    for top, keep in ((home.shards_dir, content), (home.images_dir, lambda d, n: True)):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found += [Path(dirpath) / n for n in filenames if not n.startswith(".") and keep(dirpath, n)]
    return sorted(found, key=lambda p: home.relative(p))


def build_manifest(home: DataHome, threads: int = 4) -> Manifest:
    """Hash and describe every file of the version (an image whose name is not its hash is an error)."""
    paths = version_paths(home)
    if not any(p.is_relative_to(home.shards_dir) and "_schema" not in p.parts for p in paths):
        raise ThymeError(f"{home.root}: no catalog content to push (no Parquet parts under shards/)")
    return Manifest(tuple(parallel_map(lambda p: file_entry(home, p), paths, threads)))


def file_entry(home: DataHome, path: Path) -> FileEntry:
    """The manifest entry of one file of a home (also what a cluster shard step returns for its outputs)."""
    rel = home.relative(path)
    sha = sha256_file(path)
    size = path.stat().st_size
    if rel.startswith("images/"):
        if path.name.split(".")[0] != sha:
            raise ThymeError(f"{path}: content does not match its name (sha256 {sha}); the image store is corrupted")
        return FileEntry(rel, sha, size)
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ThymeError(f"{path}: not a readable Parquet file ({exc})") from None
    return FileEntry(rel, sha, size, meta.num_rows, [[f.name, str(f.type)] for f in schema])
