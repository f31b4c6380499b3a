"""`thyme deploy` registers the deployments of infra/prefect.yaml; `thyme serve` runs a worker for a pool.

Both talk to the Prefect API named by PREFECT_API_URL (a `prefect server`, or Cloud), else to the local one of
`thyme server start`: deployments and workers need a server that outlives one command, so there is no
ephemeral fallback here. The nightly deployment's source and store come from one place (`nightly_defaults`):
the options given, else THYME_NIGHTLY_SOURCE / THYME_STORE, else beside the home (`<home>/incoming`, and
`<home>-store` when a home was named, as `thyme demo` does), and `thyme deploy` says which it used.

A worker that vanishes (its machine died, it was SIGKILLed) leaves its flow runs RUNNING for ever unless
someone notices: every flow run a thyme process starts (a command's, a `thyme serve` worker's) sends a heartbeat
every 30 s (thyme_cli/main.py), and `thyme deploy` installs Prefect's own "zombie" automation, which marks a
run CRASHED once its heartbeats stop for THYME_HEARTBEAT_TIMEOUT_S seconds (default 90). The pipeline then
dispatches that stage again (tasks/dispatch.py), and a training stage resumes there from the store's newest
checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from thyme_cli.main import HEARTBEAT_S, add_home_arg
from thyme_core.base.errors import ThymeError

REPO = Path(__file__).resolve().parent.parent
PREFECT_FILE = REPO / "infra" / "prefect.yaml"
POOLS = ("cpu", "gpu")
CRASH_AUTOMATION = "thyme: crash flow runs whose heartbeats stopped"


def register(sub) -> None:
    p = sub.add_parser("deploy", help="register the deployments of infra/prefect.yaml with the Prefect server")
    p.add_argument("--name", action="append", default=[], help="only this deployment (repeatable; default: all)")
    p.add_argument("--source", default=None, help="the nightly deployment's source: a folder or s3://bucket/prefix "
                   "(default: $THYME_NIGHTLY_SOURCE, else <home>/incoming)")
    p.add_argument("--store", default=None, help="where the nightly deployment pushes versions (default: "
                   "$THYME_STORE, else <home>-store beside a --home / $THYME_HOME, else the default local store)")
    add_home_arg(p)
    p.set_defaults(handler=deploy)
    s = sub.add_parser("serve", help="run a process worker that executes the deployments of a work pool")
    s.add_argument("--pool", choices=POOLS, default="cpu", help="work pool to serve (default cpu)")
    s.add_argument("--limit", type=int, default=None, help="maximum concurrent flow runs")
    s.add_argument("--run-once", action="store_true", help="take the runs scheduled now, finish them, exit")
    add_home_arg(s)
    s.set_defaults(handler=serve)


def _api_url() -> str:
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from tasks import local_api

    server = local_api.find()
    if server is None:
        raise ThymeError("no Prefect API: PREFECT_API_URL is not set and no local server runs; start one with "
                         "`thyme server start` (or export PREFECT_API_URL, see infra/README.md)")
    return server.url


def nightly_defaults(home_arg: str | None, source: str | None, store: str | None) -> tuple[str, str]:
    """(source, store) of the nightly deployment, derived from the options given (see the module docstring)."""
    from thyme_core.base.home import HOME_ENV, resolve_home
    from thyme_core.versions.store import STORE_ENV, default_store_uri

    home = resolve_home(home_arg).root
    source = source or os.environ.get("THYME_NIGHTLY_SOURCE") or str(home / "incoming")
    named_home = home_arg or os.environ.get(HOME_ENV)
    store = store or os.environ.get(STORE_ENV) or (str(home.parent / f"{home.name}-store") if named_home
                                                   else default_store_uri())
    return source, store


def _api_env(args) -> dict:
    from thyme_core.base.home import resolve_home

    env = dict(os.environ, PREFECT_API_URL=_api_url(), THYME_REPO=str(REPO),
               THYME_HOME=str(resolve_home(args.home).root))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return env


def deploy(args) -> int:
    env = _api_env(args)
    env["THYME_NIGHTLY_SOURCE"], env["THYME_STORE"] = nightly_defaults(args.home, args.source, args.store)
    os.environ["PREFECT_API_URL"] = env["PREFECT_API_URL"]
    ensure_work_pools()
    ensure_crash_detection(int(os.environ.get("THYME_HEARTBEAT_TIMEOUT_S", "90")))
    cmd = [str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--prefect-file", str(PREFECT_FILE)]
    cmd += [a for name in args.name for a in ("--name", name)] or ["--all"]
    out = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    print(without_worker_advice(out.stdout), end="")
    if out.returncode == 0:
        home = env["THYME_HOME"]
        print(f"\nDeployments registered with {env['PREFECT_API_URL']} (data home {home}).\n"
              f"The nightly run (paused) prepares {env['THYME_NIGHTLY_SOURCE']} and pushes to {env['THYME_STORE']}.\n"
              f"Start a worker per pool, on the machines that should run them:\n"
              f"    thyme serve --pool cpu --home {home}    # prepare, replay, evaluate, the pipeline\n"
              f"    thyme serve --pool gpu --home {home}    # training")
    return out.returncode


def without_worker_advice(text: str) -> str:
    """Prefect's output less its advice to run `prefect worker start` (a thyme worker is `thyme serve`)."""
    lines, skipping = [], False
    for line in text.splitlines(keepends=True):
        if "To execute flow runs from these deployments" in line:
            skipping = True
        if not skipping:
            lines.append(line)
        if skipping and "prefect worker start" in line:
            skipping = False
    return "".join(lines)


def serve(args) -> int:
    env = _api_env(args)
    env.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", HEARTBEAT_S)  # (main() set it; the worker's runs inherit it)
    os.environ["PREFECT_API_URL"] = env["PREFECT_API_URL"]
    ensure_work_pools()
    cmd = [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", args.pool, "--type", "process"]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    if args.run_once:
        cmd.append("--run-once")
    return run_worker(cmd, env)


WORKER_STOP_S = 10  # a stopped `thyme serve` gives its Prefect worker this long to shut down, then kills it


def run_worker(cmd: list[str], env: dict) -> int:
    """Run the Prefect worker as a child that never outlives this process: SIGTERM or SIGINT here is passed on
    to it, and if it has not exited WORKER_STOP_S later it is killed (a worker left behind polls its API for
    ever, and would take flow runs for a `thyme serve` nobody runs any more)."""
    import signal

    worker = subprocess.Popen(cmd, cwd=REPO, env=env)

    def stop(signum, _frame):
        worker.send_signal(signum)
        try:
            worker.wait(timeout=WORKER_STOP_S)
        except subprocess.TimeoutExpired:
            worker.kill()
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return worker.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if worker.poll() is None:
            worker.kill()
            worker.wait()


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


def ensure_crash_detection(timeout_s: int) -> None:
    """Prefect's recipe for zombie flow runs (docs: "detect zombie flows"): a proactive trigger per flow run,
    armed by its heartbeats, that marks it CRASHED when neither a heartbeat nor a final state follows within
    `timeout_s`. Replaced when its timeout differs. A timeout not above the heartbeat interval would crash every
    healthy run, so it is refused."""
    if timeout_s <= int(HEARTBEAT_S):
        raise ThymeError(f"THYME_HEARTBEAT_TIMEOUT_S={timeout_s} must be above the {HEARTBEAT_S} s between heartbeats "
                         "(runs would be marked CRASHED while they run)")
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    try:
        found = Automation.read(name=CRASH_AUTOMATION)
    except ValueError:  # none by that name
        found = None
    if found is not None:
        if found.trigger.within == timedelta(seconds=timeout_s):
            return
        found.delete()
    Automation(
        name=CRASH_AUTOMATION,
        description="Marks a flow run CRASHED when its worker stopped sending heartbeats (thyme deploy)",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
            within=timedelta(seconds=timeout_s)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {timeout_s} s: its worker or machine went away")],
    ).create()
