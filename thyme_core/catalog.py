"""The DuckDB catalog of a data home: views over its Parquet parts, named queries, printing.

The views are declared in sql/schema.sql with paths relative to the home root; `connect` points DuckDB's
file_search_path at the root, so a home can be moved or pulled elsewhere and its catalog still works.
Named queries live in sql/queries/<name>.sql; values are always bound as `?` parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import duckdb
import pyarrow.parquet as pq

from thyme_core.errors import ThymeError
from thyme_core.home import DataHome
from thyme_core.schema import ImageRecord, RejectRecord, ReplayRecord, RlSample, SftSample, ShardSummary, to_table
from thyme_core.schema import EvalResult, ExecutionRecord, TrajectoryRecord, TurnRecord
from thyme_core.schema import RlRolloutRecord

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

# Empty typed parts, so every view resolves before any shard exists.
_SCHEMA_PARTS = {
    "prepare": {
        "image_samples": SftSample,
        "text_samples": SftSample,
        "rl_samples": RlSample,
        "images": ImageRecord,
        "rejects": RejectRecord,
        "summary": ShardSummary,
    },
    "replay": {"replays": ReplayRecord},
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
    for table, parts in _SCHEMA_PARTS.items():
        folder = home.shards_dir / table / "_schema"
        if all((folder / f"{n}.parquet").exists() for n in parts):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for name, cls in parts.items():
            tmp = folder / f".{name}.parquet.tmp"
            pq.write_table(to_table(cls, []), tmp, compression="zstd")
            tmp.replace(folder / f"{name}.parquet")


def connect(home: DataHome, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the home's catalog.duckdb with its views (re)declared from sql/schema.sql."""
    if read_only and not home.catalog_path.exists():
        raise ThymeError(f"{home.root}: no catalog here yet (run `thyme prepare` first)")
    if not read_only:
        home.ensure()
        ensure_schema_parts(home)
    con = duckdb.connect(
        str(home.catalog_path), read_only=read_only, config={"file_search_path": str(home.root)}
    )
    if not read_only:
        con.execute(sql_text("schema"))
    return con


def query(home: DataHome, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> tuple[list[str], list[tuple]]:
    """Run SQL (or a named query's name) on the catalog; returns (column names, rows). Parameters: a sequence
    for `?`, or a dict for `$name` (the viewer's named queries)."""
    text = sql_text(f"queries/{sql}") if sql in named_queries() else sql
    try:
        con = connect(home)
    except duckdb.IOException as exc:  # DuckDB allows one writing process; connections here are short
        raise ThymeError(f"{home.catalog_path} is in use by another process; retry in a moment ({exc})") from None
    try:
        cur = con.execute(text, params if isinstance(params, dict) else list(params))
        return [d[0] for d in cur.description], cur.fetchall()
    except duckdb.Error as exc:
        raise ThymeError(f"query failed: {exc}") from None
    finally:
        con.close()


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
