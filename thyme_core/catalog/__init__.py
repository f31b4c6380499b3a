"""The DuckDB catalog of a data home: views over its Parquet parts, named queries, printing.

The views are declared in sql/schema.sql with paths relative to the home root, so a home can be moved or pulled
elsewhere and its catalog still works. Named queries live in sql/queries/<name>.sql; values are always bound as
`?` parameters.

Reads never write. `read(home)` is an in-memory DuckDB connection with the views declared over the home's
Parquet parts: it opens no database file, takes no lock, and any number of readers (the viewer, two CLI calls)
run beside writers. Both it and catalog.duckdb (for the duckdb CLI) declare schema.sql's views; in memory each
agent and RL view reads file lists with its typed empty part, and the shadowed copies are a table (views.py).
Writes happen in one place, `publish(home)`, which every stage calls after it publishes a shard folder: it
creates each view's empty typed parts (so every view resolves before its first shard) and writes
`catalog.duckdb` (the same views, for the duckdb CLI) by rename, so no reader ever sees half of it.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import duckdb
import pyarrow.parquet as pq

from thyme_core.base.errors import ThymeError
from thyme_core.base.fsio import atomic_write_bytes
from thyme_core.base.home import DataHome
from thyme_core.catalog.schema import (ImageRecord, RejectRecord, ReplayRecord, ReplayRun, RlSample, SftSample,
                                       ShardRun, ShardSummary, arrow_schema, to_table)
from thyme_core.catalog.schema import EvalResult, ExecutionRecord, TrajectoryRecord, TurnRecord
from thyme_core.catalog import views
from thyme_core.catalog.schema import RlRolloutRecord

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

# Empty typed parts, so every view resolves before any shard exists.
_SCHEMA_PARTS = {
    "prepare": {
        "image_samples": SftSample,
        "text_samples": SftSample,
        "rl_samples": RlSample,
        "images": ImageRecord,
        "rejects": RejectRecord,
        "summary": ShardSummary,
        "summary.run": ShardRun,
    },
    "replay": {"replays": ReplayRecord, "replays.run": ReplayRun},
    "agent": {"trajectories": TrajectoryRecord, "turns": TurnRecord, "executions": ExecutionRecord,
              "eval_results": EvalResult},
    "rl": {"rl_rollouts": RlRolloutRecord},
}


def sql_text(name: str) -> str:
    """The text of sql/<name>.sql (e.g. "schema" or "queries/counts_by_split")."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise ThymeError(f"no SQL file {path}")
    return path.read_text()


def named_queries() -> list[str]:
    return sorted(p.stem for p in (SQL_DIR / "queries").glob("*.sql"))


def ensure_schema_parts(home: DataHome) -> None:
    """Write each view's empty typed part where it is missing or has an older schema (a field added since)."""
    for table, parts in _SCHEMA_PARTS.items():
        folder = home.shards_dir / table / "_schema"
        for name, cls in parts.items():
            path = folder / f"{name}.parquet"
            if path.exists() and pq.read_schema(path).remove_metadata() == arrow_schema(cls):
                continue
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{name}.parquet.{os.getpid()}.{threading.get_ident()}.tmp"
            pq.write_table(to_table(cls, []), tmp, compression="zstd")
            tmp.replace(path)


def _has_schema_parts(home: DataHome) -> bool:
    return all((home.shards_dir / table / "_schema" / f"{n}.parquet").exists()
               for table, parts in _SCHEMA_PARTS.items() for n in parts)


def publish(home: DataHome) -> None:
    """The one write of the catalog: typed empty parts, and catalog.duckdb rewritten when the schema changed."""
    home.ensure()
    ensure_schema_parts(home)
    schema = sql_text("schema")
    stamp = home.catalog_path.with_name(home.catalog_path.name + ".schema-sha256")
    digest = hashlib.sha256(schema.encode()).hexdigest()
    if home.catalog_path.exists() and stamp.exists() and stamp.read_text() == digest:
        return
    tmp = home.tmp_dir / f".catalog-{threading.get_ident()}.{os.getpid()}.duckdb"  # (staging: .<pid>.<suffix>)
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp), config={"file_search_path": str(home.root)})
    try:
        con.execute(schema)
    finally:
        con.close()
    tmp.replace(home.catalog_path)  # readers of the old file keep it; new ones see the whole new one
    atomic_write_bytes(stamp, digest.encode())


@functools.cache
def empty_parts_dir() -> Path:
    """This process's typed empty parts of every view (shards/<table>/_schema/ in a temporary folder, removed
    at exit): searched after a home, so a view binds with every current column whatever the home holds."""
    folder = Path(tempfile.mkdtemp(prefix="thyme-catalog-"))
    atexit.register(shutil.rmtree, folder, True)
    ensure_schema_parts(DataHome(folder))
    return folder


def connect(root: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB over the home at `root` with schema.sql's views (with views.py's additions), nothing
    opened for writing. The caller declares the agent views again (views.declare) when shards change."""
    empty, schema = empty_parts_dir(), sql_text("schema")
    con = duckdb.connect(":memory:", config={"file_search_path": f"{root},{empty}"})
    con.execute(views.schema_sql(schema, empty))
    views.declare(con, Path(root), empty, schema)
    return con


def read(home: DataHome) -> duckdb.DuckDBPyConnection:
    """A read-only view of the catalog: in memory, no lock, no file written (see the module doc)."""
    if not _has_schema_parts(home):
        raise ThymeError(f"{home.root}: no catalog here yet (run `thyme prepare`, `thyme eval` or `thyme data pull`)")
    return connect(Path(home.root).resolve())


def is_named(name: str) -> bool:
    if not name.replace("_", "").replace("-", "").isalnum():  # SQL text is no name (nor a path outside queries/)
        return False
    return (SQL_DIR / "queries" / f"{name}.sql").is_file()


def query(home: DataHome, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> tuple[list[str], list[tuple]]:
    """Run SQL text on the catalog, read-only; returns (column names, rows). Parameters: a sequence for `?`, or a
    dict for `$name` (the viewer's named queries)."""
    con = read(home)
    try:
        cur = con.execute(sql, params if isinstance(params, dict) else list(params))
        return [d[0] for d in cur.description], cur.fetchall()
    except duckdb.Error as exc:
        raise ThymeError(f"query failed: {exc}") from None
    finally:
        con.close()


Query = Callable[..., tuple[list[str], list[tuple]]]  # (sql, params=()) -> (column names, rows)


def querier(where: "DataHome | Query") -> Query:
    """A catalog to run report queries on: a home's, or a function (sql, params=()) -> (columns, rows), such
    as a version queried where it lies in the store (versions/query.version_querier) when no home holds it."""
    if isinstance(where, DataHome):
        return lambda sql, params=(): query(where, sql, params)
    return where


def named(home: DataHome, name: str, params: Sequence[Any] | dict[str, Any] = ()) -> tuple[list[str], list[tuple]]:
    """Run the named query sql/queries/<name>.sql; an unknown name is answered with the valid ones."""
    if not is_named(name):
        raise ThymeError(f"no named query {name!r}; named queries: {', '.join(named_queries())}")
    return query(home, sql_text(f"queries/{name}"), params)


def format_table(columns: list[str], rows: list[tuple], max_width: int = 60) -> str:
    """A plain-text table, each cell cut at max_width characters."""

    def cell(v: Any) -> str:
        text = "NULL" if v is None else str(v).replace("\n", "\\n")
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join([line, sep, *body, f"({len(rows)} row{'s' if len(rows) != 1 else ''})"])
