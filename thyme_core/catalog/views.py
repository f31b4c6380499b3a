"""The agent and RL views as every Python reader declares them (catalog.read, the viewer): by explicit file lists.

sql/schema.sql declares `trajectories`, `turns`, `executions`, `eval_results` and `rl_rollouts` over globs and
keeps one row per key with a window over every row (QUALIFY row_number() ...). That is what catalog.duckdb holds
for the duckdb CLI (a static file, so it cannot list folders), but the window costs seconds over millions of turn
and execution rows, and no filter passes through it. In Python the folders can be listed, so these views replace
schema.sql's there: a copy is decided per trajectory instead, each (run_id, sample_id) belonging to the first
shard folder (by name) that holds it, and its turns, executions and eval row come from that folder. The few
folders holding a shadowed copy (an evaluation re-planned with other shard sizes) are filtered row by row; every
other folder is read as it is. rl_rollouts needs no filter: a step folder is published once (fsio.atomic_dir) and
its sample ids carry the step. Each view also reads the typed empty part of its kind (from `empty_dir`, outside
the home), so it binds with every column before its first shard; `eval_results` and `rl_rollouts` read by
column name, since they gained columns (older parts read them as NULL).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import duckdb

from thyme_core.catalog.schema import (EvalResult, ExecutionRecord, RlRolloutRecord, TrajectoryRecord,
                                       TurnRecord)

AGENT_PARTS = {"trajectories": TrajectoryRecord, "turns": TurnRecord, "executions": ExecutionRecord,
               "eval_results": EvalResult}
BY_NAME = {"eval_results", "rl_rollouts"}  # parts that gained columns since their first shards


def _columns(cls) -> str:
    return ", ".join(f'"{f.name}"' for f in dataclasses.fields(cls))


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _dirs(folder: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")
                      and e.name != "_schema")
    except OSError:
        return []


def layout(root: Path) -> tuple:
    """The shard folders the views are declared over (compare two to know whether to declare again)."""
    agent = tuple(_dirs(root / "shards" / "agent"))
    rl = tuple((k, tuple(_dirs(root / "shards" / "rl" / k))) for k in _dirs(root / "shards" / "rl"))
    return agent, rl


def declare(con: duckdb.DuckDBPyConnection, root: Path, empty_dir: Path, shards: tuple | None = None) -> int:
    """(Re)declare the five views on `con` over the folders of `shards` (default: listed now). Relative paths
    resolve against the connection's file_search_path (the home root). Returns the number of shadowed copies."""
    agent, rl = shards if shards is not None else layout(root)
    files = {part: [f"shards/agent/{d}/{part}.parquet" for d in agent
                    if (root / "shards" / "agent" / d / f"{part}.parquet").is_file()]
             for part in AGENT_PARTS}
    shadowed = _shadowed(con, files["trajectories"])
    dirty = {d for _, _, d in shadowed}
    con.execute("CREATE OR REPLACE TEMP TABLE shadowed_copies (run_id VARCHAR, sample_id VARCHAR, folder VARCHAR)")
    if shadowed:
        con.executemany("INSERT INTO shadowed_copies VALUES (?, ?, ?)", shadowed)
    for part, cls in AGENT_PARTS.items():
        clean = [f for f in files[part] if f.split("/")[2] not in dirty]
        mixed = [f for f in files[part] if f.split("/")[2] in dirty]
        _declare_union(con, part, cls, empty_dir / "shards" / "agent" / "_schema" / f"{part}.parquet", clean, mixed)
    steps = [f"shards/rl/{k}/{s}/rl_rollouts.parquet" for k, ss in rl for s in ss
             if (root / "shards" / "rl" / k / s / "rl_rollouts.parquet").is_file()]
    _declare_union(con, "rl_rollouts", RlRolloutRecord, empty_dir / "shards" / "rl" / "_schema" / "rl_rollouts.parquet",
                   steps, [])
    return len(shadowed)


def _shadowed(con, trajectory_files: list[str]) -> list[tuple[str, str, str]]:
    """(run_id, sample_id, folder) of every copy of a trajectory after the first (by folder name)."""
    if not trajectory_files:
        return []
    return con.execute(
        "SELECT run_id, sample_id, folder FROM (SELECT run_id, sample_id, split_part(filename, '/', -2) AS folder "
        f"FROM read_parquet({_sql_list(trajectory_files)}, filename = true)) "
        "QUALIFY row_number() OVER (PARTITION BY run_id, sample_id ORDER BY folder) > 1").fetchall()


def _declare_union(con, name: str, cls, empty: Path, clean: list[str], mixed: list[str]) -> None:
    cols = _columns(cls)
    opts = ", union_by_name = true" if name in BY_NAME else ""
    selects = [f"SELECT {cols} FROM read_parquet({_sql_list([str(empty)] + clean)}{opts})"]
    if mixed:
        selects.append(
            f"SELECT {cols} FROM read_parquet({_sql_list(mixed)}, filename = true{opts}) p "
            "WHERE NOT EXISTS (SELECT 1 FROM shadowed_copies s WHERE s.run_id = p.run_id "
            "AND s.sample_id = p.sample_id AND s.folder = split_part(p.filename, '/', -2))")
    con.execute(f"CREATE OR REPLACE VIEW {name} AS " + " UNION ALL ".join(selects))
