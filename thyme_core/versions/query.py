"""Query a version where it lies (a local store or S3) with DuckDB, without downloading it.

The views are those of the local catalog, taken from sql/schema.sql: each `read_parquet('shards/...')` glob
is matched against the manifest's paths and replaced by the list of the matching objects' URLs, so DuckDB
reads only the Parquet footers and the column chunks a query needs (HTTP range requests on S3). A view whose
files the version lacks (a table added after the version was pushed) is left out, with the views built on it.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import duckdb

from thyme_core import catalog
from thyme_core.base.errors import ThymeError
from thyme_core.catalog import views
from thyme_core.versions.manifest import Manifest
from thyme_core.versions.pull import load_manifest
from thyme_core.versions.keys import Store, object_key

_READ = re.compile(r"read_parquet\((\[[^\]]*\]|'[^']*')(\s*,[^)]*)?\)")  # the files, then options kept
_LITERAL = re.compile(r"'([^']*)'")
_VIEW = re.compile(r"CREATE\s+OR\s+REPLACE\s+VIEW\s+(\w+)", re.I)


def glob_regex(pattern: str) -> re.Pattern:
    """DuckDB's glob on one path: `*` and `?` stay within a path segment, `**` crosses them."""
    out = ""
    for token in re.split(r"(\*\*|\*|\?)", pattern):
        out += {"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
    return re.compile(out + r"\Z")


def view_statements(manifest: Manifest, url) -> tuple[list[str], list[str]]:
    """sql/schema.sql rewritten for the version: (statements, names of views left out)."""
    text = "\n".join(line for line in catalog.sql_text("schema").splitlines() if not line.lstrip().startswith("--"))
    statements, missing = [], []
    for stmt in (s.strip() for s in text.split(";")):
        if not stmt:
            continue
        empty = False

        def expand(m: re.Match) -> str:
            nonlocal empty
            urls = []
            for pattern in _LITERAL.findall(m.group(1)):
                rx = glob_regex(pattern)
                urls += [url(f.sha256) for f in manifest.files if rx.match(f.path)]
            urls = list(dict.fromkeys(urls))  # an object two folders hold (identical parts) is read once
            empty = empty or not urls
            files = ", ".join("'" + u.replace("'", "''") + "'" for u in urls)
            return f"read_parquet([{files}]{m.group(2) or ''})"

        rewritten = _READ.sub(expand, stmt)
        if empty:
            missing.append(_view_name(stmt))
        else:
            statements.append(rewritten)
    return statements, missing


def _view_name(stmt: str) -> str:
    m = _VIEW.search(stmt)
    return m.group(1) if m else stmt[:40]


def connect_version(store: Store, spec: str) -> tuple[duckdb.DuckDBPyConnection, str, list[str]]:
    """An in-memory DuckDB with the catalog views over the version's objects: (connection, sha256, left out)."""
    _, sha, manifest = load_manifest(store, spec)
    con = duckdb.connect()
    store.setup_duckdb(con)
    url = lambda s: store.url(object_key(s))  # noqa: E731
    statements, missing = view_statements(manifest, url)
    agent_declared = False
    for stmt in statements:
        if views.agent_statements(stmt):  # the agent views: declared together, over the version's objects
            if not agent_declared:
                agent_declared = True
                if "agent_shadowed" in missing:  # no agent parts in this version
                    missing += [_view_name(s) for s in views.agent_statements(catalog.sql_text("schema"))]
                else:
                    _declare_agent_views(con, manifest, url)
            continue
        try:
            con.execute(stmt)
        except duckdb.CatalogException:  # built on a view the version lacks
            missing.append(_view_name(stmt))
    return con, sha, missing


def _declare_agent_views(con: duckdb.DuckDBPyConnection, manifest: Manifest, url) -> None:
    """schema.sql's agent views over the version's objects, each URL's shard folder named in agent_files (an
    object two folders hold is read once, from the first folder by name)."""
    files: dict[str, list[tuple[str, str]]] = {}
    seen: set[str] = set()
    for f in sorted(manifest.files, key=lambda f: f.path):
        parts = f.path.split("/")
        if len(parts) == 4 and parts[:2] == ["shards", "agent"] and parts[3].endswith(".parquet"):
            u = url(f.sha256)
            if u not in seen:
                seen.add(u)
                files.setdefault(parts[3][: -len(".parquet")], []).append((parts[2], u))
    con.execute("CREATE OR REPLACE TEMP TABLE agent_files (file VARCHAR, folder VARCHAR)")
    rows = [(u, folder) for pairs in files.values() for folder, u in pairs]
    if rows:
        con.executemany("INSERT INTO agent_files VALUES (?, ?)", rows)
    views.declare_lists(con, files, catalog.empty_parts_dir(), catalog.sql_text("schema"))


def version_querier(store: Store, spec: str) -> catalog.Query:
    """The version as a catalog for reports (catalog.querier): each call queries it in place."""
    return lambda sql, params=(): query_version(store, spec, sql, params)


def query_version(store: Store, spec: str, sql: str, params: Sequence[Any] | dict[str, Any] = ()
                  ) -> tuple[list[str], list[tuple]]:
    """Run SQL (or a named query's name) on the version in place; returns (column names, rows). Parameters as in
    catalog.query: a sequence for `?`, a dict for `$name`."""
    text = catalog.sql_text(f"queries/{sql}") if catalog.is_named(sql) else sql
    con, sha, missing = connect_version(store, spec)
    try:
        cur = con.execute(text, params if isinstance(params, dict) else list(params))
        return [d[0] for d in cur.description], cur.fetchall()
    except duckdb.Error as exc:
        hint = f" (views not in version {sha[:12]}: {', '.join(missing)})" if missing else ""
        raise ThymeError(f"query failed: {exc}{hint}") from None
    finally:
        con.close()
