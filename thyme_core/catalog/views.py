"""The agent and RL views for every Python reader (catalog.read, the viewer): sql/schema.sql's, given file lists.

sql/schema.sql declares `trajectories`, `turns`, `executions`, `eval_results` and `rl_rollouts` once, for
catalog.duckdb (the duckdb CLI) and for Python alike: a trajectory published in two folders is kept from the
first folder by name, the copies left out listed by the view `agent_shadowed`, and only folders holding such a
copy are filtered row by row (no window over every row: that cost seconds over millions of turn and execution
rows). There the views read globs. Python can list the folders, so it runs the same statements with their
`agent_part(...)` arguments replaced (nothing else of a view is written here):
- `clean`: the parts of the folders holding no shadowed copy, read as they are (`listed` true: no folder test);
- `dirty`: the parts of the few folders that hold one, checked row by row;
- each list (the RL one too) also names the part's typed empty file in `empty_dir` (outside the home), so a
  view binds with every current column whatever the home holds (a home whose own empty parts are older);
- `agent_shadowed` is kept as a temporary table (it shadows the view of that name), computed once per shard
  layout instead of on every query; the caller declares again when the folders change.
A version queried in place (versions/query.py) passes its objects' URLs the same way (declare_lists), with
schema.sql's `agent_files` naming each URL's shard folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb

# schema.sql's agent view calls and RL file list (the globs Python replaces by file lists)
_AGENT_CALL = re.compile(r"agent_part\(\['shards/agent/\*/(\w+)\.parquet'\], \['shards/agent/\*/\1\.parquet'\], "
                         r"(true|false), false\)")
_RL_LIST = re.compile(r"\['(shards/rl/\*\*/(\w+)\.parquet)'\]")


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _empty(empty_dir: Path, table: str, part: str) -> str:
    return (Path(empty_dir) / "shards" / table / "_schema" / f"{part}.parquet").as_posix()


def _dirs(folder: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")
                      and e.name != "_schema")
    except OSError:
        return []


def layout(root: Path) -> tuple:
    """The shard folders the views read (compare two to know whether to declare again)."""
    agent = tuple(_dirs(root / "shards" / "agent"))
    rl = tuple((k, tuple(_dirs(root / "shards" / "rl" / k))) for k in _dirs(root / "shards" / "rl"))
    return agent, rl


def schema_sql(text: str, empty_dir: Path) -> str:
    """schema.sql's text with the RL file list also naming its typed empty file (the agent views are declared
    again by `declare`, with file lists)."""
    return _RL_LIST.sub(lambda m: _sql_list([_empty(empty_dir, "rl", m[2]), m[1]]), text)


def agent_statements(text: str) -> list[str]:
    """schema.sql's statements that declare an agent view (those calling agent_part with its globs); comment
    lines are dropped first, so a `;` in a comment never splits a statement."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in code.split(";") if _AGENT_CALL.search(s)]


def declare(con: duckdb.DuckDBPyConnection, root: Path, empty_dir: Path, schema: str, shards: tuple | None = None
            ) -> int:
    """Declare schema.sql's agent views over the home's folders of `shards` (default: listed now), with the
    shadowed copies computed first. Returns the number of shadowed copies."""
    agent, _ = shards if shards is not None else layout(root)
    parts = {m[1] for m in _AGENT_CALL.finditer(schema)}
    files = {part: [(d, f"shards/agent/{d}/{part}.parquet") for d in agent
                    if (Path(root) / "shards" / "agent" / d / f"{part}.parquet").is_file()] for part in parts}
    return declare_lists(con, files, empty_dir, schema)


def declare_lists(con: duckdb.DuckDBPyConnection, files: dict[str, list[tuple[str, str]]], empty_dir: Path,
                  schema: str) -> int:
    """Compute the shadowed copies (a temporary table over schema.sql's view agent_shadowed, which must be
    declared), then declare schema.sql's agent views over `files`: part -> [(shard folder, file path or URL)].
    Returns the number of shadowed copies."""
    con.execute("CREATE OR REPLACE TEMP TABLE agent_shadowed AS SELECT * FROM main.agent_shadowed")
    dirty = {f for (f,) in con.execute("SELECT DISTINCT folder FROM agent_shadowed").fetchall()}

    def lists(m: re.Match) -> str:
        part, by_name = m[1], m[2]
        empty = _empty(empty_dir, "agent", part)
        clean = [empty] + [f for d, f in files.get(part, []) if d not in dirty]
        mixed = [empty] + [f for d, f in files.get(part, []) if d in dirty]
        return f"agent_part({_sql_list(clean)}, {_sql_list(mixed)}, {by_name}, true)"

    for statement in agent_statements(schema):
        con.execute(_AGENT_CALL.sub(lists, statement))
    return con.execute("SELECT count(*) FROM agent_shadowed").fetchone()[0]
