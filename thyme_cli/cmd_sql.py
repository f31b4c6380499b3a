"""`thyme sql "QUERY"` or `thyme sql NAME`: query the catalog, print a table, CSV or JSON.

`--format csv` (a header row, then RFC 4180 rows) and `--format json` (an array of objects, one per row; dates
and decimals as strings) print every cell whole, for scripts; `table` cuts cells at --max-width for reading.
"""

from __future__ import annotations

import csv
import io
import json

from thyme_cli.main import add_home_arg

FORMATS = ("table", "csv", "json")


def register(sub) -> None:
    p = sub.add_parser("sql", help="run SQL (or a named query from sql/queries/) on the catalog")
    p.add_argument("query", nargs="?", help="SQL text, or the name of a query in sql/queries/")
    p.add_argument("--param", action="append", default=[],
                   help="a value bound to the next `?`, or NAME=VALUE for a query's `$NAME` (a JSON value: 10, "
                        "null, or text) (repeatable)")
    p.add_argument("--list", action="store_true", help="list the named queries")
    p.add_argument("--format", choices=FORMATS, default="table", help="output: table (default), csv or json")
    p.add_argument("--max-width", type=int, default=60, help="table: cut cells longer than this (default 60)")
    add_home_arg(p)
    p.set_defaults(handler=run)


def render(columns: list[str], rows: list[tuple], fmt: str, max_width: int = 60) -> str:
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
        return out.getvalue().rstrip("\n")
    if fmt == "json":
        return json.dumps([dict(zip(columns, row)) for row in rows], default=str, ensure_ascii=False, indent=1)
    from thyme_core import catalog

    return catalog.format_table(columns, rows, max_width)


def run(args) -> int:
    from thyme_core import catalog
    from thyme_core.base.errors import ThymeError
    from thyme_core.base.home import resolve_home

    if args.list:
        print("\n".join(catalog.named_queries()))
        return 0
    if not args.query:
        raise ThymeError("give a query (SQL text or a name from `thyme sql --list`)")
    run_query = catalog.named if catalog.is_named(args.query) else catalog.query
    columns, rows = run_query(resolve_home(args.home), args.query, _params(args.param))
    print(render(columns, rows, args.format, args.max_width))
    return 0


def _params(values: list[str]) -> list[str] | dict:
    """`?` values as given, or {name: value} when every one is NAME=VALUE (VALUE read as JSON when it parses)."""
    import re

    if not values or not all(re.match(r"^[A-Za-z_]\w*=", v) for v in values):
        return values
    named = {}
    for v in values:
        name, _, text = v.partition("=")
        try:
            named[name] = json.loads(text)
        except ValueError:
            named[name] = text
    return named
