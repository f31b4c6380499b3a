"""`thyme view --export DIR`: the viewer's pages as static files, to share or attach, with the images they show.

The same Pages render with ExportLinks (flat <kind>-<hash>.html names, relative links); the samples pages hold
every row of their category (up to `max_rows`) and filter in the page (static/viewer.js). Images are copied from
the store by their stored path, so DIR/images/ mirrors the store for what the pages use. Written to a staging
folder and renamed into place: DIR appears complete or not at all (an existing DIR is refused).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.viewer import images, runs
from thyme_core.viewer.db import Catalog
from thyme_core.viewer.links import ExportLinks
from thyme_core.viewer.pages import Pages
from thyme_core.viewer.server import STATIC_FILES, static_asset

MAX_ROWS = 5000


def export(home: DataHome, out: Path, max_rows: int = MAX_ROWS) -> dict:
    """Write every page under `out`; returns counts of what was written."""
    out = Path(out)
    if out.exists():
        raise ThymeError(f"{out} exists: give a new folder for the export")
    stage = out.with_name(f".{out.name}.partial")
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "static").mkdir(parents=True)
    catalog = Catalog(home)
    try:
        counts = _write_all(home, catalog, stage, max_rows)
    finally:
        catalog.close()
    stage.rename(out)
    return counts


def _write_all(home: DataHome, catalog: Catalog, stage: Path, max_rows: int) -> dict:
    links, pages = ExportLinks(), Pages(catalog, ExportLinks())
    written, wanted_images = {"pages": 0, "images": 0}, set()

    def page(name: str, html: str) -> None:
        (stage / name).write_text(html)
        written["pages"] += 1

    for name in (*STATIC_FILES, "pygments.css"):
        (stage / "static" / name).write_bytes(static_asset(name)[0])
    page(links.runs(), pages.runs())
    for run in catalog.query("agent_runs"):
        run_id = run["run_id"]
        trajectories = catalog.query("run_trajectories", run_id=run_id)
        if run["kind"] == "eval":
            page(links.eval(run_id), pages.eval_run(run_id))
            cats = catalog.query("eval_run_accuracy", run_id=run_id)
            for bench, category in {("", "")} | {(c["benchmark"], "" if c["category"] == "(all)" else c["category"])
                                                 for c in cats}:
                page(links.samples(run_id, bench, category),
                     pages.samples(run_id, bench, category, {}, limit=max_rows))
        for t in trajectories[: max_rows * 10]:
            page(links.trajectory(run_id, t["sample_id"]), pages.trajectory(run_id, t["sample_id"]))
            wanted_images.update(t["image_paths"] or [])
    for run in runs.train_runs(home):
        if run.kind == "sft":
            page(links.sft(run.stage, run.key), pages.sft_run(run.stage, run.key))
            continue
        page(links.rl(run.key), pages.rl_run(run.key))
        for step in runs.read_metrics(run.run_dir, "reward_mean"):
            if catalog.query("rl_step_rollouts", run=f"rl-{run.key}", step=step["step"]):
                page(links.rl_step(run.key, step["step"]), pages.rl_step(run.key, step["step"]))
    for rel in sorted(wanted_images):
        src = images.resolve(home, rel)
        if src is not None:
            dst = stage / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            written["images"] += 1
    return written
