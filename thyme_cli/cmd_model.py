"""`thyme model push|pull|versions|prune`: model versions (Hugging Face folders) in the store of dataset versions.

A model version is a folder's files by content (versions/folders.py); `pull` lands it in the home's model
cache, <home>/models/store/<manifest sha256>/, and prints that folder, which every `--model` takes. Training
stages take and publish versions themselves (`model=NAME@HASH`); these commands are for doing it by hand.
`prune` keeps the home's model cache within a size, least recently used versions first, never one a running
process holds (versions/model_cache.py; THYME_MODEL_CACHE_GB does it after every pull).
"""

from __future__ import annotations

import argparse

from thyme_cli.cmd_data import STORE_HELP, _home, _size, _store_errors, made_from
from thyme_cli.main import add_home_arg


def register(sub) -> None:
    group = sub.add_parser("model", help="model versions: push a weights folder, pull one, list them")
    group.add_argument("--home", dest="group_home", default=None, help=argparse.SUPPRESS)
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = actions.add_parser("push", help="publish a Hugging Face weights folder as the model version NAME/TAG")
    p.add_argument("folder")
    p.add_argument("name", help="model name (letters, digits, '.', '_', '-')")
    p.add_argument("--tag", default="latest", help="ref to move to the new version (default: latest)")
    p.add_argument("--store", default=None, help=STORE_HELP)
    add_home_arg(p)
    p.set_defaults(handler=run_push)

    p = actions.add_parser("pull", help="fetch a model version into the home's model cache; prints its folder")
    p.add_argument("spec", metavar="NAME[@TAG|@HASH]")
    p.add_argument("--store", default=None, help=STORE_HELP)
    add_home_arg(p)
    p.set_defaults(handler=run_pull)

    p = actions.add_parser("prune", help="shrink the home's model cache to a size, least recently used first")
    p.add_argument("--keep-gb", type=float, required=True, help="gigabytes the cache may keep (0: all it can)")
    add_home_arg(p)
    p.set_defaults(handler=run_prune)

    p = actions.add_parser("versions", help="list a model's versions with what each was made from")
    p.add_argument("name")
    p.add_argument("--store", default=None, help=STORE_HELP)
    add_home_arg(p)
    p.set_defaults(handler=run_versions)


def run_push(args) -> int:
    from thyme_core.prepare.digests import cached_sha256
    from thyme_core.versions.folders import push_folder
    from thyme_core.versions.store import open_store

    home = _home(args)  # the files' hashes are remembered there: pushing the same folder again reads nothing
    with _store_errors():
        store = open_store(args.store)
        r = push_folder(args.folder, store, args.name, (args.tag,), digest=lambda p: cached_sha256(p, home))
    state = "already there" if r.unchanged else f"{r.uploaded} of {r.objects} files uploaded, {_size(r.uploaded_bytes)}"
    print(f"{r.name}/{r.tag} -> {r.manifest}  ({state}) in {store.uri}")
    return 0


def run_pull(args) -> int:
    from thyme_core.versions.folders import models_cache, pull_folder
    from thyme_core.versions.store import open_store

    with _store_errors():
        _, _, folder = pull_folder(open_store(args.store), args.spec, models_cache(_home(args).ensure()))
    print(folder)
    return 0


def run_prune(args) -> int:
    from thyme_core.base.errors import ThymeError
    from thyme_core.versions import model_cache
    from thyme_core.versions.folders import models_cache

    if args.keep_gb < 0:
        raise ThymeError(f"--keep-gb must be 0 or more, not {args.keep_gb}")
    cache = models_cache(_home(args))
    results = model_cache.prune(cache, int(args.keep_gb * 1e9))
    for r in results:
        print(f"{r.sha256[:16]}  {_size(r.bytes):>9}  {'removed' if r.removed else 'kept: in use by a running process'}")
    left = sum(model_cache.size_of(f) for f in model_cache.versions(cache))
    print(f"{sum(r.removed for r in results)} versions removed; the cache {cache} holds {_size(left)}")
    return 0


def run_versions(args) -> int:
    from thyme_core.catalog import format_table
    from thyme_core.versions.refs import versions
    from thyme_core.versions.store import open_store

    with _store_errors():
        entries = versions(open_store(args.store), args.name)
    rows = [(("* " if e["current"] else "  ") + e["manifest"][:16], e["tag"], e["pushed_at"], e["files"],
             _size(e["bytes"]), made_from(e.get("lineage"))) for e in entries]
    print(format_table(["version", "tag", "pushed_at", "files", "size", "made from"], rows, max_width=200))
    return 0
