"""The live viewer: a small WSGI app (stdlib wsgiref, threaded) over one home, bound to 127.0.0.1 by default.

Requests map to Pages methods by path; parameters come from the query string and only ever reach SQL as bound
values. Files: the package's own static assets by exact name, and images through images.resolve (the store's
naming, inside the store's real folder); nothing else of the filesystem is reachable. Responses carry a
Content-Security-Policy that allows only this origin's scripts and images, so even an escaping bug could not
load or run anything from elsewhere; bound to loopback, it answers only requests whose Host is a loopback name.
"""

from __future__ import annotations

import socketserver
import traceback
from html import escape
from pathlib import Path
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.viewer import images
from thyme_core.viewer.db import Catalog
from thyme_core.viewer.links import LiveLinks
from thyme_core.viewer.pages import FILTER_KEYS, NotFound, Pages, pygments_css

STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"viewer.css": "text/css", "viewer.js": "text/javascript"}
HEADERS = [("Content-Security-Policy", "default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
           ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")]


def static_asset(name: str) -> tuple[bytes, str] | None:
    if name == "pygments.css":
        return pygments_css().encode(), "text/css"
    if name in STATIC_FILES:
        return (STATIC / name).read_bytes(), STATIC_FILES[name]
    return None


LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _host_name(header: str) -> str:
    """The name part of a Host header ("127.0.0.1:8765" -> "127.0.0.1", "[::1]:80" -> "[::1]")."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]")[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class App:
    def __init__(self, home: DataHome, allowed_hosts: set[str] | None = None):
        """`allowed_hosts`: Host header names served (None: any). Bound to loopback, only loopback names are, so a
        web page elsewhere cannot read the viewer through a DNS name it points at 127.0.0.1 (DNS rebinding)."""
        self.home, self.allowed_hosts = home, allowed_hosts
        self.catalog = Catalog(home)
        self.pages = Pages(self.catalog, LiveLinks())
        self.pages.warm()  # a start-up cost, so the first page a user asks for is not the slow one

    def route(self, path: str, q: dict) -> tuple[str, bytes, str]:
        """(status, body, content type) of a GET."""
        one = lambda k: (q.get(k) or [""])[0]  # noqa: E731
        p = self.pages
        if path in ("/", "/index.html"):
            return _html(p.runs())
        if path == "/eval":
            return _html(p.eval_run(one("run")))
        if path == "/samples":
            offset = int(one("offset")) if one("offset").isdigit() else 0
            return _html(p.samples(one("run"), one("benchmark"), one("category"),
                                   {k: one(k) for k in FILTER_KEYS}, offset=offset))
        if path == "/trajectory":
            return _html(p.trajectory(one("run"), one("sample")))
        if path == "/rl":
            return _html(p.rl_run(one("key")))
        if path == "/rlstep" and one("step").isdigit():
            return _html(p.rl_step(one("key"), int(one("step"))))
        if path == "/sft" and one("stage").isdigit():
            return _html(p.sft_run(int(one("stage")), one("key")))
        if path.startswith("/static/"):
            asset = static_asset(path[len("/static/"):])
            if asset:
                return "200 OK", asset[0], asset[1]
        if path.startswith("/images/"):
            found = images.resolve(self.home, path[1:])
            if found is not None:
                return "200 OK", found.read_bytes(), images.content_type(found)
            return "404 Not Found", b"no such image", "text/plain"
        return "404 Not Found", b"not found", "text/plain"

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), *HEADERS])
            return [b""]
        if self.allowed_hosts is not None and _host_name(environ.get("HTTP_HOST", "")) not in self.allowed_hosts:
            start_response("403 Forbidden", [("Content-Type", "text/plain"), *HEADERS])
            return [b"this viewer answers only to the names of this machine's loopback address"]
        path = environ.get("PATH_INFO", "/")
        try:
            status, body, ctype = self.route(path, parse_qs(environ.get("QUERY_STRING", "")))
        except NotFound as exc:
            status, body, ctype = "404 Not Found", self.pages.message(str(exc)).encode(), "text/html; charset=utf-8"
        except ThymeError as exc:
            status, body, ctype = "500 Internal Server Error", _error(str(exc)), "text/html; charset=utf-8"
        except Exception:  # a page bug must not take the server down; the trace goes to its log
            traceback.print_exc()
            status, body, ctype = "500 Internal Server Error", _error("internal error"), "text/html; charset=utf-8"
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body))), *HEADERS])
        return [b"" if method == "HEAD" else body]


def _html(text: str) -> tuple[str, bytes, str]:
    return "200 OK", text.encode(), "text/html; charset=utf-8"


def _error(message: str) -> bytes:
    return f"<!doctype html><title>error</title><p>{escape(message)}</p>".encode()


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the stdlib's name)
        pass


def make(home: DataHome, host: str = "127.0.0.1", port: int = 8765):
    """A server ready to serve_forever() (port 0: any free port; server.server_port tells which)."""
    allowed = LOOPBACK if host in LOOPBACK else None
    return make_server(host, port, App(home, allowed), server_class=_Server, handler_class=_QuietHandler)
