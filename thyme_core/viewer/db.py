"""The viewer's only door to the catalog: a read-only DuckDB over the home's Parquet parts.

The viewer never opens catalog.duckdb (a writer may hold it, and a read path must not write): it declares the
views of sql/schema.sql in an in-memory DuckDB whose file_search_path is the home root, so nothing on disk can
change through it. A view whose files do not exist yet (a home with no RL run, or no `_schema` parts) reads the
typed empty parts that catalog.ensure_schema_parts writes into a temporary folder searched after the home, so
every page and query still binds. Queries are the named files of sql/queries/ with `$name`
parameters bound by DuckDB.

The agent views (trajectories, turns, executions, eval_results) and rl_rollouts are then declared again, faster:
schema.sql keeps one row per key with a window over every row (QUALIFY row_number() ...), which costs seconds
over millions of turn and execution rows. Here a copy is decided per trajectory instead: each (run_id, sample_id)
belongs to the first shard folder (by name) that holds it, and its turns, executions and eval row come from that
folder. The few folders that hold a shadowed copy (an evaluation re-planned with other shard sizes) are filtered
row by row; every other folder is read as it is, by an explicit file list. rl_rollouts needs no filter: a step
folder is published once (fsio.atomic_dir) and its sample ids carry the step. The file lists are re-read when
the shard folders change (checked on each query: one directory listing), so new shards show up.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

import duckdb

from thyme_core import catalog
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.catalog.schema import (EvalResult, ExecutionRecord, RlRolloutRecord, TrajectoryRecord, TurnRecord,
                                       to_table)

AGENT_PARTS = {"trajectories": TrajectoryRecord, "turns": TurnRecord, "executions": ExecutionRecord,
               "eval_results": EvalResult}


def _columns(cls) -> str:
    return ", ".join(f'"{f.name}"' for f in dataclasses.fields(cls))


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _dirs(folder: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


class Catalog:
    """Named queries over one home, read-only. One connection, serialised by a lock (the pages' queries are
    short; a DuckDB connection is not for concurrent use from threads)."""

    def __init__(self, home: DataHome):
        self.home = home
        self.root = Path(home.root).resolve()
        if not self.root.is_dir():
            raise ThymeError(f"{home.root}: no such data home")
        self._lock = threading.Lock()
        # typed empty parts outside the home, searched after it: a view with no part in the home yet reads these
        self._empty_parts = tempfile.mkdtemp(prefix="thyme-viewer-")
        catalog.ensure_schema_parts(DataHome(Path(self._empty_parts)))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._empty_parts, True)  # also at exit
        self.con = duckdb.connect(":memory:", config={"file_search_path": f"{self.root},{self._empty_parts}"})
        # parquet footers cached across queries: a page reads a few rows from each of hundreds of parts
        self.con.execute("SET parquet_metadata_cache = true")
        self.con.execute(catalog.sql_text("schema"))
        self._layout: tuple = ()
        self.shadowed = 0  # trajectory copies left out (the row-by-row case)
        self.version = 0  # counts the shard layouts seen: what the pages may cache against

    def _drop(self, name: str) -> None:
        views = self.con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = ? AND NOT internal",
                                 [name]).fetchone()[0]
        self.con.execute(f"DROP {'VIEW' if views else 'TABLE'} IF EXISTS {name}")

    def _empty(self, name: str, cls) -> None:
        self._drop(name)
        self.con.from_arrow(to_table(cls, [])).create(name)

    # ---- the fast agent and RL views

    def _current_layout(self) -> tuple:
        agent = tuple(_dirs(self.root / "shards" / "agent"))
        rl = tuple((k, tuple(_dirs(self.root / "shards" / "rl" / k))) for k in _dirs(self.root / "shards" / "rl"))
        return agent, rl

    def _refresh(self) -> None:
        layout = self._current_layout()
        if layout == self._layout:
            return
        agent, rl = layout
        files = {part: [f"shards/agent/{d}/{part}.parquet" for d in agent
                        if (self.root / "shards" / "agent" / d / f"{part}.parquet").is_file()]
                 for part in AGENT_PARTS}
        shadowed = self._shadowed(files["trajectories"])
        dirty = sorted({d for _, _, d in shadowed})
        self.shadowed = len(shadowed)
        self.con.execute("DROP TABLE IF EXISTS shadowed_copies")
        self.con.execute("CREATE TEMP TABLE shadowed_copies (run_id VARCHAR, sample_id VARCHAR, folder VARCHAR)")
        if shadowed:
            self.con.executemany("INSERT INTO shadowed_copies VALUES (?, ?, ?)", shadowed)
        for part, cls in AGENT_PARTS.items():
            clean = [f for f in files[part] if f.split("/")[2] not in dirty]
            mixed = [f for f in files[part] if f.split("/")[2] in dirty]
            self._declare_union(part, cls, clean, mixed)
        steps = [f"shards/rl/{k}/{s}/rl_rollouts.parquet" for k, ss in rl for s in ss
                 if (self.root / "shards" / "rl" / k / s / "rl_rollouts.parquet").is_file()]
        self._declare_union("rl_rollouts", RlRolloutRecord, steps, [])
        self._layout = layout
        self.version += 1

    def _shadowed(self, trajectory_files: list[str]) -> list[tuple[str, str, str]]:
        """(run_id, sample_id, folder) of every copy of a trajectory after the first (by folder name)."""
        if not trajectory_files:
            return []
        return self.con.execute(
            "SELECT run_id, sample_id, folder FROM (SELECT run_id, sample_id, split_part(filename, '/', -2) AS folder "
            f"FROM read_parquet({_sql_list(trajectory_files)}, filename = true)) "
            "QUALIFY row_number() OVER (PARTITION BY run_id, sample_id ORDER BY folder) > 1").fetchall()

    def _declare_union(self, name: str, cls, clean: list[str], mixed: list[str]) -> None:
        cols = _columns(cls)
        selects = [f"SELECT {cols} FROM read_parquet({_sql_list(clean)})"] if clean else []
        if mixed:
            selects.append(
                f"SELECT {cols} FROM read_parquet({_sql_list(mixed)}, filename = true) p "
                "WHERE NOT EXISTS (SELECT 1 FROM shadowed_copies s WHERE s.run_id = p.run_id "
                "AND s.sample_id = p.sample_id AND s.folder = split_part(p.filename, '/', -2))")
        if not selects:
            self._empty(name, cls)
            return
        self._drop(name)
        self.con.execute(f"CREATE VIEW {name} AS " + " UNION ALL ".join(selects))

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
        self._cleanup()
