"""The viewer's only door to the catalog: a read-only DuckDB over the home's Parquet parts.

The viewer never opens catalog.duckdb (a writer may hold it, and a read path must not write): it declares the
views of sql/schema.sql in an in-memory DuckDB whose file_search_path is the home root, so every query sees the
Parquet parts as they are now, new shards included, and nothing on disk can change through it. A view whose
files do not exist yet (a home with no RL run) is declared as an empty table of its record's columns, so every
page and query still binds. Queries are the named files of sql/queries/ with `$name` parameters bound by DuckDB.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import duckdb

from thyme_core import catalog
from thyme_core.errors import ThymeError
from thyme_core.home import DataHome
from thyme_core.schema import (EvalResult, ExecutionRecord, ImageRecord, RejectRecord, ReplayRecord, RlRolloutRecord,
                               RlSample, SftSample, ShardSummary, TrajectoryRecord, TurnRecord, to_table)

_VIEW = re.compile(r"CREATE\s+OR\s+REPLACE\s+VIEW\s+(\w+)", re.I)
# the record behind each base view: its empty stand-in when no part exists yet
_EMPTY = {"sft_samples_all": SftSample, "rl_samples_all": RlSample, "images": ImageRecord,
          "prepare_shards": ShardSummary, "replays": ReplayRecord, "trajectories": TrajectoryRecord,
          "turns": TurnRecord, "executions": ExecutionRecord, "eval_results": EvalResult,
          "rl_rollouts": RlRolloutRecord}


def _statements(text: str) -> list[str]:
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


class Catalog:
    """Named queries over one home, read-only. One connection, serialised by a lock (DuckDB connections are not
    shared across threads; the viewer's pages are short queries)."""

    def __init__(self, home: DataHome):
        self.home = home
        if not Path(home.root).is_dir():
            raise ThymeError(f"{home.root}: no such data home")
        self._lock = threading.Lock()
        self.con = duckdb.connect(":memory:", config={"file_search_path": str(Path(home.root).resolve())})
        self.empty_views = self._declare()

    def _declare(self) -> list[str]:
        empty = []
        for stmt in _statements(catalog.sql_text("schema")):
            name = (_VIEW.search(stmt) or [None, ""])[1]
            try:
                self.con.execute(stmt)
            except duckdb.Error:
                empty.append(name)
                if name in _EMPTY:
                    self.con.from_arrow(to_table(_EMPTY[name], [])).create(name)
                elif name == "rejects":
                    self.con.execute("CREATE TABLE rejects (split VARCHAR, source_file VARCHAR, source_row BIGINT, "
                                     "reason VARCHAR, detail VARCHAR, shard VARCHAR)")
        return empty

    def query(self, name: str, **params: Any) -> list[dict]:
        """Rows of sql/queries/<name>.sql as dicts, with `$key` parameters bound from `params`."""
        text = catalog.sql_text(f"queries/{name}")
        return self.sql(text, **params)

    def sql(self, text: str, **params: Any) -> list[dict]:
        with self._lock:
            try:
                cur = self.con.execute(text, params) if params else self.con.execute(text)
                cols = [d[0] for d in cur.description]
                return [dict(zip(cols, row)) for row in cur.fetchall()]
            except duckdb.Error as exc:
                raise ThymeError(f"viewer query failed: {exc}") from None

    def close(self) -> None:
        self.con.close()
