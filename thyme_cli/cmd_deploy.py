"""`thyme deploy` registers the deployments of infra/prefect.yaml; `thyme serve` runs a worker for a pool.

Both talk to the Prefect API named by PREFECT_API_URL (a `prefect server start --host 127.0.0.1`, or Cloud):
deployments and workers need a server that outlives one command, so there is no ephemeral fallback here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from thyme_cli.main import add_home_arg

REPO = Path(__file__).resolve().parent.parent
PREFECT_FILE = REPO / "infra" / "prefect.yaml"
POOLS = ("cpu", "gpu")


def register(sub) -> None:
    p = sub.add_parser("deploy", help="register the deployments of infra/prefect.yaml with the Prefect server")
    p.add_argument("--name", action="append", default=[], help="only this deployment (repeatable; default: all)")
    add_home_arg(p)
    p.set_defaults(handler=deploy)
    s = sub.add_parser("serve", help="run a process worker that executes the deployments of a work pool")
    s.add_argument("--pool", choices=POOLS, default="cpu", help="work pool to serve (default cpu)")
    s.add_argument("--limit", type=int, default=None, help="maximum concurrent flow runs")
    s.add_argument("--run-once", action="store_true", help="take the runs scheduled now, finish them, exit")
    add_home_arg(s)
    s.set_defaults(handler=serve)


def _api_env(args) -> dict:
    from thyme_core.base.errors import ThymeError
    from thyme_core.base.home import resolve_home

    if not os.environ.get("PREFECT_API_URL"):
        raise ThymeError("PREFECT_API_URL is not set: start `prefect server start --host 127.0.0.1` and export "
                         "PREFECT_API_URL=http://127.0.0.1:4200/api (see infra/README.md)")
    home = resolve_home(args.home)
    env = dict(os.environ, THYME_REPO=str(REPO), THYME_HOME=str(home.root))
    env.setdefault("THYME_NIGHTLY_SOURCE", str(home.root / "incoming"))
    from thyme_core.versions.store import default_store_uri

    env.setdefault("THYME_STORE", default_store_uri())
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return env


def deploy(args) -> int:
    env = _api_env(args)
    ensure_work_pools()
    cmd = [str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--prefect-file", str(PREFECT_FILE)]
    cmd += [a for name in args.name for a in ("--name", name)] or ["--all"]
    return subprocess.run(cmd, cwd=REPO, env=env).returncode


def serve(args) -> int:
    env = _api_env(args)
    ensure_work_pools()
    cmd = [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", args.pool, "--type", "process"]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    if args.run_once:
        cmd.append("--run-once")
    return subprocess.run(cmd, cwd=REPO, env=env).returncode


def ensure_work_pools() -> None:
    """Create the `cpu` and `gpu` process work pools if the server does not have them yet."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    async def create():
        async with get_client() as client:
            for name in POOLS:
                try:
                    await client.create_work_pool(WorkPoolCreate(name=name, type="process"))
                except ObjectAlreadyExists:
                    pass

    asyncio.run(create())
