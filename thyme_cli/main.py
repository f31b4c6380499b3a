"""The `thyme` command. Each subcommand lives in its own module of this package and exposes
`register(subparsers)`; heavy imports (prefect, torch) happen inside the handlers so `thyme --help` is quick.

Every subcommand takes `--home DIR` (default: $THYME_HOME, else ~/.local/share/thyme).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

import thyme_cli
from thyme_core.base.errors import ThymeError


def add_home_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        default=None,
        help="data home folder (default: $THYME_HOME, else ~/.local/share/thyme)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thyme", description="Thyme data, training and evaluation pipeline")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(thyme_cli.__path__), key=lambda m: m.name):
        if mod.name.startswith("cmd_"):
            importlib.import_module(f"thyme_cli.{mod.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # No internet on training clusters is common: silence Prefect's telemetry attempts unless asked for.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ThymeError as exc:
        print(f"thyme {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
