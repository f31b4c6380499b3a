"""`thyme view`: the trajectory and run viewer over the catalog (a local web app), or `--export DIR` for the same
pages as static files."""

from __future__ import annotations

from thyme_cli.main import add_home_arg


def register(sub) -> None:
    p = sub.add_parser("view", help="browse runs, eval results, trajectories (with images) and training curves")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--export", metavar="DIR", default=None, help="write the pages as static HTML into DIR instead")
    add_home_arg(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from thyme_core.base.home import resolve_home

    home = resolve_home(args.home)
    if args.export:
        from thyme_core.viewer.export import export

        counts = export(home, args.export)
        print(f"wrote {counts['pages']} pages and {counts['images']} images to {args.export} (open index.html)")
        return 0
    from thyme_core.viewer import server

    httpd = server.make(home, args.host, args.port)
    print(f"thyme viewer on http://{args.host}:{httpd.server_port}/ (home {home.root}); Ctrl-C stops it", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0
