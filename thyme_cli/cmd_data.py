"""`thyme data push|pull|versions|lineage|query`: dataset versions in a local folder or on S3 (thyme_core.versions).

Model versions live in the same store and are handled by `thyme model` (cmd_model.py); `thyme data lineage`
covers both."""

from __future__ import annotations

import argparse
import contextlib

from thyme_cli.main import add_home_arg

STORE_HELP = ("version store: a folder, file:///path or s3://bucket/prefix (default: $THYME_STORE, else "
              "~/.local/share/thyme-store); S3 uses the standard AWS configuration (AWS_ENDPOINT_URL, AWS_PROFILE, ...)")


def register(sub) -> None:
    group = sub.add_parser("data", help="dataset versions: push, pull, list, query in place")
    # Also accepted before the action (`thyme data --home DIR pull NAME`); a separate dest so the action's own
    # --home default cannot overwrite it.
    group.add_argument("--home", dest="group_home", default=None, help=argparse.SUPPRESS)
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = actions.add_parser("push", help="publish the home's catalog as an immutable version NAME/TAG")
    p.add_argument("name", help="dataset name (letters, digits, '.', '_', '-')")
    p.add_argument("--tag", default="latest", help="ref to move to the new version (default: latest)")
    _common(p, home=True)
    p.set_defaults(handler=run_push)

    p = actions.add_parser("pull", help="materialize a version into a data home, every checksum verified")
    p.add_argument("spec", metavar="NAME[@TAG|@HASH]", help="version to pull (default tag: latest)")
    p.add_argument("--replace", action="store_true", help="replace a home that holds a different catalog")
    _common(p, home=True)
    p.set_defaults(handler=run_pull)

    p = actions.add_parser("versions", help="list a dataset's versions with time, size and row counts")
    p.add_argument("name")
    _common(p)
    p.set_defaults(handler=run_versions)

    p = actions.add_parser("lineage", help="SQL over every version in the store and what it was made from "
                                           "(view `versions`: name, tag, manifest, kind, stage, inputs, config, "
                                           "code, run, flow_run, ...)")
    p.add_argument("query", nargs="?", default="SELECT name, left(manifest, 16) AS version, tag, kind, stage, inputs, "
                   "flow_run FROM versions WHERE current ORDER BY pushed_at", help="SQL (default: current versions)")
    p.add_argument("--param", action="append", default=[], help="a value bound to the next `?` (repeatable)")
    p.add_argument("--max-width", type=int, default=80, help="cut cells longer than this (default 80)")
    _common(p)
    p.set_defaults(handler=run_lineage)

    p = actions.add_parser("query", help="run SQL on a version in place (no download), with the catalog's views")
    p.add_argument("spec", metavar="NAME[@TAG|@HASH]")
    p.add_argument("query", help="SQL text, or the name of a query in sql/queries/")
    p.add_argument("--param", action="append", default=[], help="a value bound to the next `?` (repeatable)")
    p.add_argument("--max-width", type=int, default=60, help="cut cells longer than this (default 60)")
    _common(p)
    p.set_defaults(handler=run_query)


def _common(p, home: bool = False) -> None:
    p.add_argument("--store", default=None, help=STORE_HELP)
    if home:
        add_home_arg(p)


@contextlib.contextmanager
def _store_errors():
    """An S3 failure left after botocore's retries (access denied, endpoint down) as a one-line error."""
    from botocore.exceptions import BotoCoreError, ClientError

    from thyme_core.base.errors import ThymeError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise ThymeError(f"store: {exc}") from None


def _home(args):
    from thyme_core.base.home import resolve_home

    return resolve_home(args.home or args.group_home)


def run_push(args) -> int:
    from thyme_core.versions.push import push
    from thyme_core.versions.store import open_store

    with _store_errors():
        store = open_store(args.store)
        r = push(_home(args), store, args.name, args.tag)
    if r.unchanged:
        print(f"{r.name}/{r.tag} already points at {r.manifest} (nothing to push)")
    else:
        print(f"{r.name}/{r.tag} -> {r.manifest}  ({r.objects} objects, {r.uploaded} uploaded, "
              f"{_size(r.uploaded_bytes)}) in {store.uri}")
    return 0


def run_pull(args) -> int:
    from thyme_core.versions.pull import pull
    from thyme_core.versions.store import open_store

    home = _home(args)
    with _store_errors():
        r = pull(open_store(args.store), args.spec, home, replace=args.replace)
    if r.unchanged:
        print(f"{home.root} already holds {r.name} {r.manifest}")
    else:
        print(f"{r.name} {r.manifest} -> {home.root}  ({r.files} files, {r.downloaded} downloaded, "
              f"{_size(r.downloaded_bytes)}, all checksums verified)")
    return 0


def run_versions(args) -> int:
    from thyme_core.catalog import format_table
    from thyme_core.versions.refs import versions
    from thyme_core.versions.store import open_store

    with _store_errors():
        entries = versions(open_store(args.store), args.name)
    columns = ["version", "tag", "pushed_at", "by", "files", "size", "images", "rows", "made from"]
    rows = [(("* " if e["current"] else "  ") + e["manifest"][:16], e["tag"], e["pushed_at"], e["by"], e["files"],
             _size(e["bytes"]), e["images"], " ".join(f"{k}={v}" for k, v in sorted(e["rows"].items()) if v),
             made_from(e.get("lineage"))) for e in entries]
    print(format_table(columns, rows, max_width=200))
    return 0


def made_from(lineage: dict | None) -> str:
    """A version's lineage in one cell: stage, inputs (versions shortened), flow run."""
    if not lineage:
        return ""
    inputs = " ".join(f"{k}={str(v)[:30]}" for k, v in sorted((lineage.get("inputs") or {}).items()))
    run = f" run {lineage['flow_run'][:8]}" if lineage.get("flow_run") else ""
    return f"{lineage.get('stage', '')}: {inputs} config {lineage.get('config') or '-'} code {lineage.get('code') or '-'}{run}"


def run_lineage(args) -> int:
    from thyme_core.catalog import format_table
    from thyme_core.versions.lineage import query_lineage
    from thyme_core.versions.store import open_store

    with _store_errors():
        columns, rows = query_lineage(open_store(args.store), args.query, args.param)
    print(format_table(columns, rows, args.max_width))
    return 0


def run_query(args) -> int:
    from thyme_core.catalog import format_table
    from thyme_core.versions.query import query_version
    from thyme_core.versions.store import open_store

    with _store_errors():
        columns, rows = query_version(open_store(args.store), args.spec, args.query, args.param)
    print(format_table(columns, rows, args.max_width))
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
