"""Lineage of every version in a store, as SQL: a DuckDB view `versions` (sql/lineage.sql) over the history
entries of every ref (dataset and model versions alike).

Each entry's `lineage` is what the stage that published it recorded (versions/push.py, pipeline/training.py):
the stage and its key, the input versions (as JSON, e.g. {"dataset": "NAME@SHA", "model": "tiny"}), the
config hash, the code version, the run key and the Prefect flow run id. Entries pushed by hand have none.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import duckdb
import pyarrow as pa

from thyme_core import catalog
from thyme_core.base.errors import ThymeError
from thyme_core.versions import refs
from thyme_core.versions.keys import Store

_FIELDS = ("stage", "stage_key", "config", "code", "run", "flow_run")


def version_rows(store: Store) -> list[dict]:
    names = sorted({k.split("/")[1] for k in store.list_keys("refs/") if k.count("/") == 2 and k.endswith(".json")})
    rows = []
    for name in names:
        for e in refs.versions(store, name):
            lin = e.get("lineage") or {}
            rows.append({"name": name, "tag": e["tag"], "manifest": e["manifest"], "kind": e.get("kind", "dataset"),
                         "pushed_at": e["pushed_at"], "publisher": e.get("by", ""), "current": e["current"],
                         **{f: None if lin.get(f) is None else str(lin[f]) for f in _FIELDS},
                         "inputs": json.dumps(lin["inputs"], sort_keys=True) if "inputs" in lin else None})
    return rows


def query_lineage(store: Store, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple]]:
    schema = pa.schema([(c, pa.bool_() if c == "current" else pa.string()) for c in (
        "name", "tag", "manifest", "kind", "pushed_at", "publisher", "current", *_FIELDS, "inputs")])
    con = duckdb.connect()
    try:
        con.register("version_rows", pa.Table.from_pylist(version_rows(store), schema=schema))
        con.execute(catalog.sql_text("lineage"))
        cur = con.execute(sql, list(params))
        return [d[0] for d in cur.description], cur.fetchall()
    except duckdb.Error as exc:
        raise ThymeError(f"query failed: {exc}") from None
    finally:
        con.close()
