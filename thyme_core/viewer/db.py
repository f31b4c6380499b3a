"""The viewer's only door to the catalog: a read-only DuckDB over the home's Parquet parts.

The viewer never opens catalog.duckdb (a writer may hold it, and a read path must not write): it uses
catalog.connect, the in-memory DuckDB every Python reader uses, whose file_search_path is the home root and then
a temporary folder of typed empty parts (so a view with no part in the home yet still binds), with schema.sql's
views (catalog/views.py: given file lists). What this adds: one connection kept open across requests, parquet
footers cached, and the agent views declared again when the shard folders change (checked on each query: one
directory listing), so new shards show up. Queries are the named files of sql/queries/ with `$name`
parameters bound by DuckDB.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb

from thyme_core import catalog
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.catalog import views


class Catalog:
    """Named queries over one home, read-only. One connection, serialised by a lock (the pages' queries are
    short; a DuckDB connection is not for concurrent use from threads)."""

    def __init__(self, home: DataHome):
        self.home = home
        self.root = Path(home.root).resolve()
        if not self.root.is_dir():
            raise ThymeError(f"{home.root}: no such data home")
        self._lock = threading.Lock()
        self._layout = views.layout(self.root)
        self.con = catalog.connect(self.root)  # declares the views over this layout
        # parquet footers cached across queries: a page reads a few rows from each of hundreds of parts
        self.con.execute("SET parquet_metadata_cache = true")
        self.shadowed = self.con.execute("SELECT count(*) FROM agent_shadowed").fetchone()[0]  # copies left out
        self.version = 0  # counts the shard layouts seen: what the pages may cache against

    def _refresh(self) -> None:
        """Declare the agent views again when the shard folders changed (one directory listing)."""
        layout = views.layout(self.root)
        if layout == self._layout:
            return
        self.shadowed = views.declare(self.con, self.root, catalog.empty_parts_dir(), catalog.sql_text("schema"),
                                      layout)
        self._layout = layout
        self.version += 1

    # ---- queries

    def query(self, name: str, **params: Any) -> list[dict]:
        """Rows of sql/queries/<name>.sql as dicts, with `$key` parameters bound from `params`."""
        return self.sql(catalog.sql_text(f"queries/{name}"), **params)

    def sql(self, text: str, **params: Any) -> list[dict]:
        with self._lock:
            try:
                self._refresh()
                cur = self.con.execute(text, params) if params else self.con.execute(text)
                cols = [d[0] for d in cur.description]
                return [dict(zip(cols, row)) for row in cur.fetchall()]
            except duckdb.Error as exc:
                raise ThymeError(f"viewer query failed: {exc}") from None

    def close(self) -> None:
        self.con.close()
