"""`thyme server start|stop|status`: a long-lived local Prefect API with its UI, reused by every command.

While it runs, `thyme prepare`, `eval`, `train-sft`... talk to it instead of booting a temporary API each
(~10 s per command on 2 cores), their runs stay browsable in the UI, and `thyme deploy` / `thyme serve` find
it without PREFECT_API_URL. See tasks/local_api.py for where its pid and port are kept.
"""

from __future__ import annotations

import time


def register(sub) -> None:
    group = sub.add_parser("server", help="a long-lived local Prefect API + UI on 127.0.0.1 that thyme commands reuse")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("start", help="start it in the background (nothing to do when it already runs)")
    p.add_argument("--port", type=int, default=4200, help="port on 127.0.0.1 (default 4200)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait until it answers (default 120)")
    p.set_defaults(handler=run_start)
    p = actions.add_parser("stop", help="stop it")
    p.set_defaults(handler=run_stop)
    p = actions.add_parser("status", help="say whether it runs and where (exit code 0: running, 3: not running)")
    p.set_defaults(handler=run_status)


def run_start(args) -> int:
    from tasks import local_api

    server, started = local_api.start(args.port, args.timeout)
    print(f"{'started' if started else 'already running:'} Prefect API {server.url} (UI {server.ui_url}, "
          f"pid {server.pid}); thyme commands use it until `thyme server stop`")
    return 0


def run_stop(args) -> int:
    from tasks import local_api

    server = local_api.stop()
    print(f"stopped the Prefect API on port {server.port} (pid {server.pid})" if server else "no server was running")
    return 0


def run_status(args) -> int:
    from tasks import local_api

    server = local_api.find()
    if server is None:
        print(f"not running (start it with `thyme server start`; state in {local_api.state_dir()})")
        return 3
    up = time.time() - server.started_at
    print(f"running: Prefect API {server.url}, UI {server.ui_url}, pid {server.pid}, up {up / 60:.0f} min, "
          f"log {server.log}")
    return 0
