"""`thyme sql "QUERY"` or `thyme sql NAME`: query the catalog, print a table."""

from __future__ import annotations

from thyme_cli.main import add_home_arg


def register(sub) -> None:
    p = sub.add_parser("sql", help="run SQL (or a named query from sql/queries/) on the catalog")
    p.add_argument("query", nargs="?", help="SQL text, or the name of a query in sql/queries/")
    p.add_argument("--param", action="append", default=[],
                   help="a value bound to the next `?`, or NAME=VALUE for a query's `$NAME` (a JSON value: 10, "
                        "null, or text) (repeatable)")
    p.add_argument("--list", action="store_true", help="list the named queries")
    p.add_argument("--max-width", type=int, default=60, help="cut cells longer than this (default 60)")
    add_home_arg(p)
    p.set_defaults(handler=run)


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
    print(catalog.format_table(columns, rows, args.max_width))
    return 0


def _params(values: list[str]) -> list[str] | dict:
    """`?` values as given, or {name: value} when every one is NAME=VALUE (VALUE read as JSON when it parses)."""
    import json
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
