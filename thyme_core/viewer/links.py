"""Where a page links to, in the two ways the viewer is read: the live server (query-string URLs) and an export
(flat .html files). Pages only ever call these methods, so the same templates serve both; every link is relative
(no leading slash), so an export opens from any folder and the live pages work behind a path prefix.

`viewer_url(kind, ...)` is the link a Prefect artifact carries when THYME_VIEWER_URL names a running viewer.
"""

from __future__ import annotations

import hashlib
import os
from urllib.parse import urlencode

from thyme_core.viewer.images import safe_path

VIEWER_URL_ENV = "THYME_VIEWER_URL"


class LiveLinks:
    static_export = False

    def _q(self, page: str, **params) -> str:
        kept = {k: v for k, v in params.items() if v not in (None, "")}
        return f"{page}?{urlencode(kept)}" if kept else page

    def runs(self) -> str:
        return "index.html"

    def static(self, name: str) -> str:
        return f"static/{name}"

    def image(self, rel: str) -> str:
        return rel if safe_path(rel) else ""

    def eval(self, run_id: str) -> str:
        return self._q("eval", run=run_id)

    def samples(self, run_id: str, benchmark: str = "", category: str = "", **filters) -> str:
        return self._q("samples", run=run_id, benchmark=benchmark, category=category, **filters)

    def trajectory(self, run_id: str, sample_id: str) -> str:
        return self._q("trajectory", run=run_id, sample=sample_id)

    def rl(self, key: str) -> str:
        return self._q("rl", key=key)

    def rl_step(self, key: str, step: int) -> str:
        return self._q("rlstep", key=key, step=step)

    def sft(self, stage: int, key: str) -> str:
        return self._q("sft", stage=stage, key=key)


def _name(*parts) -> str:
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:16]


class ExportLinks(LiveLinks):
    """Flat files: <kind>-<hash of the arguments>.html; filters are applied in the page (no server)."""

    static_export = True

    def eval(self, run_id: str) -> str:
        return f"eval-{_name(run_id)}.html"

    def samples(self, run_id: str, benchmark: str = "", category: str = "", **filters) -> str:
        return f"samples-{_name(run_id, benchmark, category)}.html"

    def trajectory(self, run_id: str, sample_id: str) -> str:
        return f"trajectory-{_name(run_id, sample_id)}.html"

    def rl(self, key: str) -> str:
        return f"rl-{_name(key)}.html"

    def rl_step(self, key: str, step: int) -> str:
        return f"rlstep-{_name(key, step)}.html"

    def sft(self, stage: int, key: str) -> str:
        return f"sft-{_name(stage, key)}.html"


def viewer_url(kind: str, *args) -> str:
    """The page of an eval run (`eval`, run_id) or RL run (`rl`, key) on the viewer at $THYME_VIEWER_URL, or ""
    when none is configured."""
    base = os.environ.get(VIEWER_URL_ENV, "").strip()
    if not base:
        return ""
    return base.rstrip("/") + "/" + getattr(LiveLinks(), kind)(*args)


def markdown_link(kind: str, *args) -> str:
    """A line for a Prefect markdown artifact ("" without a configured viewer)."""
    url = viewer_url(kind, *args)
    return f"\n\n[Open in the thyme viewer]({url})\n" if url else ""
