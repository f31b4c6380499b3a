"""The viewer in a real browser: headless Chromium (Debian's package, infra/setup-system.sh) driven by Playwright
over a home with real evaluation trajectories (the scripted demo benchmark through the agent loop and sandbox) and
a small RL step (hand-written rows), served by `thyme view` as a subprocess. Checked: every page loads without
console errors, every image is really decoded (naturalWidth > 0), the box of a known crop sits over the region the
code cropped, filters change the rows (live and in an export), and screenshots are saved under the test's tmp
folder. One browser for the module; each test closes its page."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.conftest import BIN, free_port, running
from thyme_core.synth import benchmark as bench_tsv
from thyme_core.agent import records
from thyme_core.eval import evaluate
from thyme_core.agent.config import AgentConfig
from thyme_core.agent.infer import BackendSpec
from thyme_core.base.home import DataHome

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (infra/setup-system.sh)")
# demo row 1: a square at (57, 43); its code crops (47, 33, 107, 93) from the 320x240 input
KNOWN = ("demo_bench:1", (47, 33, 107, 93))


def rl_rows(home: DataHome) -> str:
    """One RL step of two groups (one zero-variance), rows written as rl/store.py does; returns the run key."""

    import pyarrow.parquet as pq

    from thyme_core.base.fsio import atomic_dir
    from thyme_core.catalog.schema import RlRolloutRecord, to_table

    key = "viewerkey0000001"
    run = f"rl-{key}"
    traj_dir = home.shards_dir / "agent"
    src = sorted(traj_dir.glob("eval-*"))[0]
    base = pq.read_table(src / "trajectories.parquet").to_pylist()[0]
    rows, rl = [], []
    for group, rewards in enumerate(((2.0, 0.5), (0.5, 0.5))):
        for member, reward in enumerate(rewards):
            sid = f"s00001/p{group}:{member}"
            from thyme_core.catalog.schema import TrajectoryRecord

            rows.append((TrajectoryRecord(**{**base, "run_id": run, "sample_id": sid, "benchmark": ""}), [], []))
            acc = 1.0 if reward > 1 else 0.0  # 2.0 = right, consistent, formatted; 0.5 = formatted only
            rl.append(RlRolloutRecord(run, 1, group, member, f"p{group}", sid, reward, "", 1.0, acc,
                                      1.0 if acc else None, reward - 1.25 if group == 0 else 0.0, group == 0, ""))
    records.publish(home, f"{run}-step-00001", rows)
    with atomic_dir(home.shards_dir / "rl" / key / "step-00001", home.tmp_dir) as stage:
        pq.write_table(to_table(RlRolloutRecord, rl), stage / "rl_rollouts.parquet")
    run_dir = home.root / "runs" / "rl" / key
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"key": key, "prompts": "p", "config": "c", "code": "x"}))
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward_mean": 0.875, "kl_mean": 0.0,
                                                       "grad_norm": 1.5, "clip_fraction": 0.0}) + "\n")
    sft = home.root / "runs" / "sft" / "stage1" / "sftkey0000000001"
    sft.mkdir(parents=True)
    (sft / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 2.0 / s, "lr": 1e-5, "grad_norm": 1.0,
                                                           "tokens_per_s": 100.0, "padding": 0.1}) + "\n"
                                               for s in (1, 2, 3)))
    (sft / "DONE").write_text('{"steps": 3}')
    return key


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer-browser")
    home = DataHome(root / "home").ensure()
    tsv, responses = bench_tsv.write_demo_benchmark(root / "bench", n=9)
    spec = BackendSpec("scripted", response_file=str(responses))
    config = AgentConfig(isolation="none")  # generated, trusted code
    for shard in evaluate.plan(tsv, spec, config, shard_rows=5):
        evaluate.eval_shard(shard, home, spec, config)
    return home, rl_rows(home)


@pytest.fixture(scope="module")
def viewer(demo_home, tmp_path_factory):
    home, _ = demo_home
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [str(BIN / "thyme"), "view", "--home", str(home.root), "--port", str(port)]
    log = tmp_path_factory.mktemp("viewer-log") / "viewer.log"
    with running(cmd, lambda: urllib.request.urlopen(url, timeout=5).status == 200, log, "thyme view",
                 env=dict(os.environ, PYTHONPATH=str(REPO))):
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


class Page:
    """A browser page that records console errors and failed requests."""

    def __init__(self, browser, shots: Path):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors, self.shots = [], shots
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.errors.append(f"failed {r.url}"))

    def open(self, url: str, shot: str):
        response = self.page.goto(url)
        assert response is None or response.ok, f"{url}: {response.status}"
        self.page.wait_for_load_state("load")
        self.page.screenshot(path=str(self.shots / f"{shot}.png"), full_page=True)
        assert self.errors == [], f"{url}: {self.errors}"
        broken = self.page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                                    ".map(i => i.src)")
        assert broken == [], f"{url}: images not decoded: {broken}"
        return self.page

    def follow(self, selector: str) -> None:
        """Click the first link matching `selector` and wait until the next page has loaded, scripts included.
        Clicking on before then aborts the page's script request (a failed request, and filters without it)."""
        with self.page.expect_navigation(wait_until="load"):
            self.page.locator(selector).first.click()

    def links(self, selector: str) -> list[str]:
        return self.page.eval_on_selector_all(selector, "els => els.map(e => e.href)")


def box_in_image_pixels(page, selector: str) -> list[float]:
    """A crop box's position over its image, in the image's own pixels (whatever size it is shown at)."""
    return page.evaluate("""sel => { const b = document.querySelector(sel); const img = b.parentElement.querySelector('img');
        const r = b.getBoundingClientRect(), i = img.getBoundingClientRect(), s = img.naturalWidth / i.width;
        return [(r.left - i.left) * s, (r.top - i.top) * s, (r.right - i.left) * s, (r.bottom - i.top) * s]; }""",
                         selector)


def test_every_page_loads_decodes_its_images_and_draws_the_known_crop(viewer, browser, tmp_path, demo_home):
    _, rl_key = demo_home
    p = Page(browser, tmp_path)
    try:
        runs = p.open(viewer, "runs")
        eval_links = p.links("#agent-runs a[href*='eval?']")
        assert len(eval_links) == 1
        p.open(eval_links[0], "eval")
        categories = p.links("#accuracy a.category")
        assert len(categories) == 3  # (all), color, color-hard
        p.open(categories[1], "category")
        assert runs.locator("#samples tr.sample").count() == 5  # color: rows 0, 2, 4, 6, 8
        p.open(p.links("#samples a")[0], "trajectory-first")
        run_id = eval_links[0].split("run=")[1]
        page = p.open(f"{viewer}trajectory?run={run_id}&sample={KNOWN[0]}", "trajectory-known-crop")
        assert page.locator(".main-input img").evaluate("i => i.naturalWidth") == 320
        got = box_in_image_pixels(page, ".main-input .box")
        assert max(abs(a - b) for a, b in zip(got, KNOWN[1])) <= 1.5, got
        assert page.locator("img.fed-back").evaluate("i => i.naturalWidth") == 60
        p.open(f"{viewer}rl?key={rl_key}", "rl-run")
        assert page.locator("svg.chart polyline, svg.chart circle").count() > 0
        p.open(p.links("#steps a")[0], "rl-step")
        assert page.locator(".rollout").count() == 4
        assert page.locator(".rollout.dropped").first.inner_text().find("zero-variance group") >= 0
        assert page.locator(".rollout .reward-accuracy").all_inner_texts() == ["1.0", "0.0", "0.0", "0.0"]
        assert page.locator(".rollout .reward-consistency").all_inner_texts() == ["1.0", "–", "–", "–"]
        p.open(p.links(".rollout a")[0], "rl-trajectory")
        p.open(viewer, "runs-again")
        p.open(p.links("#sft-runs a")[0], "sft")
        assert page.locator("#sft-charts svg.chart polyline").count() == 5
    finally:
        p.page.close()


def test_filters_change_the_rows_live_and_in_an_export(viewer, browser, tmp_path, demo_home):
    home, _ = demo_home
    p = Page(browser, tmp_path)
    try:
        page = p.open(viewer, "runs")
        p.follow("#agent-runs a[href*='eval?']")
        p.follow("#accuracy a.category")
        assert page.locator("#samples tr.sample").count() == 9
        with page.expect_navigation():
            page.select_option("select[name=outcome]", "wrong")  # rows 0, 3, 6 answer the wrong letter
        assert page.locator("#samples tr.sample").count() == 3
        with page.expect_navigation():
            page.select_option("select[name=error_type]", "NameError")  # and rows 0, 4, 8 fail once first
        assert page.locator("#samples tr.sample").count() == 1
        page.screenshot(path=str(tmp_path / "filtered-live.png"), full_page=True)
        assert p.errors == []

        out = tmp_path / "export"
        subprocess.run([str(BIN / "thyme"), "view", "--home", str(home.root), "--export",
                        str(out)], check=True, env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO)
        page = p.open((out / "index.html").as_uri(), "export-runs")
        p.follow("#agent-runs a[href^='eval-']")
        p.follow("#accuracy a.category")
        visible = "#samples tr.sample:not(.hidden)"
        assert page.locator(visible).count() == 9
        page.select_option("select[name=outcome]", "wrong")
        assert page.locator(visible).count() == 3
        page.fill("input[name=q]", "no such words")
        assert page.locator(visible).count() == 0
        page.screenshot(path=str(tmp_path / "filtered-export.png"), full_page=True)
        trajectory = page.locator("#samples a").first.get_attribute("href")
        p.open((out / trajectory).as_uri(), "export-trajectory")
        assert p.errors == []
    finally:
        p.page.close()
