"""The `thyme` command. Each subcommand lives in its own module of this package and exposes
`register(subparsers)`; heavy imports (prefect, torch) happen inside the handlers so `thyme --help` is quick.

Every subcommand takes `--home DIR` (default: $THYME_HOME, else ~/.local/share/thyme).

A user error (ThymeError: a bad path, a missing column, no samples in the chosen splits, a bad parameter)
ends the command with one line on stderr and exit code 2, without a traceback (Prefect's logs keep only the
error line too: tasks/user_errors.py); `thyme --debug COMMAND` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

import thyme_cli
from thyme_core.base.errors import ThymeError

# Every flow run a thyme process starts, in-process from a command or on a `thyme serve` worker, sends a
# heartbeat this often (Prefect's minimum; its default is 180 s). `thyme deploy`'s crash automation marks a run
# CRASHED when no heartbeat follows within THYME_HEARTBEAT_TIMEOUT_S (90): with Prefect's default, a command's
# run longer than that was marked CRASHED while it ran (seen at 45 s with a 40 s timeout), then Completed.
HEARTBEAT_S = "30"


def add_home_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        default=None,
        help="data home folder (default: $THYME_HOME, else ~/.local/share/thyme)",
    )


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a bad one is argparse's one-line usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value
def add_cluster_args(parser: argparse.ArgumentParser, dataset: str) -> None:
    """--cluster/--store/--dataset: run the shard work on a Ray cluster and publish a dataset version."""
    parser.add_argument("--cluster", default=None, metavar="ray://HOST:PORT",
                        help="run the shards on this Ray cluster (default: $THYME_RAY_ADDRESS, else this machine)")
    parser.add_argument("--store", default=None,
                        help="with --cluster: the version store every worker writes to (s3://bucket/prefix, or a "
                             "folder all of them see; default: $THYME_STORE, else ~/.local/share/thyme-store)")
    parser.add_argument("--dataset", default="",
                        help=f"publish the result as this dataset version in --store (with --cluster: the version to "
                             f"read and publish, default {dataset}; without it, nothing is published)")


def cluster_kwargs(args) -> dict:
    return {"cluster": args.cluster or "", "store": args.store or "", "dataset": args.dataset}


def warm_up(cluster: str | None):
    """What to do while the Prefect API starts: connect to the cluster, or warm the local process pool."""
    from thyme_core.cluster.engine import address, engine

    where = address(cluster)
    if where:
        return lambda: engine(where)
    from thyme_core.base import workers

    return workers.warm


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thyme", description="Thyme data, training and evaluation pipeline")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(thyme_cli.__path__), key=lambda m: m.name):
        if mod.name.startswith("cmd_"):
            importlib.import_module(f"thyme_cli.{mod.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # No internet on training clusters is common: silence Prefect's telemetry attempts unless asked for.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", HEARTBEAT_S)  # read when prefect is imported
    args = build_parser().parse_args(argv)
    if args.debug:
        os.environ["THYME_DEBUG"] = "1"
    from tasks import user_errors

    user_errors.cli_reports_errors = True
    try:
        return int(args.handler(args) or 0)
    except ThymeError as exc:
        if args.debug:
            raise
        print(f"thyme {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
