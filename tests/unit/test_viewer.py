"""The viewer over a real evaluation home (the scripted demo benchmark through the agent loop and sandbox) plus a
hand-written hostile trajectory: pages escape model-written text, the server serves only image-store files, crop
regions come from the pixels, filters change rows, a re-published shard is counted once, nothing is written to the
home, and the export's links all resolve. Browser checks are in tests/integration/test_viewer_browser.py."""

from __future__ import annotations

import dataclasses
import http.client
import io
import json
import re
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

from thyme_core.synth import benchmark as bench_tsv
from thyme_core.agent import records
from thyme_core.eval import evaluate
from thyme_core.agent.config import AgentConfig
from thyme_core.agent.infer import BackendSpec
from thyme_core.base.home import DataHome
from thyme_core.images.store import ImageStore, prepare_image
from thyme_core.catalog.schema import EvalResult, ExecutionRecord, TrajectoryRecord, TurnRecord
from thyme_core.viewer import crops, db, images, links, server
from thyme_core.viewer.export import export
from thyme_core.viewer.links import LiveLinks
from thyme_core.viewer.pages import NotFound, Pages

HOSTILE = '<script>alert("x")</script>'
HOSTILE_RUN = "eval-hostile"


def store(home: DataHome, im: Image.Image) -> tuple[str, str]:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    prepared = prepare_image(buf.getvalue())
    ImageStore(home.root, home.tmp_dir).put(prepared)
    return prepared.sha256, prepared.relpath


def hostile_shard(home: DataHome) -> None:
    """A trajectory whose every model-written field is markup, and whose fed-back image path points outside."""
    sha, rel = store(home, Image.new("RGB", (64, 48), (10, 200, 30)))
    sid = f"bench:{HOSTILE}"
    traj = TrajectoryRecord(
        run_id=HOSTILE_RUN, sample_id=sid, benchmark="bench", question=f"Q {HOSTILE}", image_sha256=[sha, "f" * 64],
        image_paths=[rel, "images/../catalog.duckdb"], response=HOSTILE, answer=f'"><img src=x onerror=alert(1)>',
        correct=False, stop_reason="answer", rounds=1, prompt_tokens=1, generated_tokens=1, sandbox_tokens=0,
        image_tokens=0, total_tokens=2, token_ids=[], token_mask=[], image_offsets=[], image_grid_thw=[],
        generate_s=0.0, sandbox_s=0.0, total_s=0.0, backend="scripted", model=HOSTILE, config="c")
    turn = TurnRecord(HOSTILE_RUN, sid, 0, f"think {HOSTILE}<code>x</code>", f"print('</pre>{HOSTILE}')", 1, "code")
    ex = ExecutionRecord(HOSTILE_RUN, sid, 0, "error", "Evil<b>", f"Evil<b>: {HOSTILE}", f"out {HOSTILE}", 0.1,
                         ["f" * 64], "image", 1)
    result = EvalResult(HOSTILE_RUN, "bench", "0", f"cat{HOSTILE}", sid, HOSTILE, "", HOSTILE, False, "answer",
                        "", "", "thyme", "thyme", 1)
    records.publish(home, "eval-hostile-shard", [(traj, [turn], [ex])], [result])


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer")
    home = DataHome(root / "home").ensure()
    tsv, responses = bench_tsv.write_demo_benchmark(root / "bench", n=6)
    spec = BackendSpec("scripted", response_file=str(responses))
    config = AgentConfig(isolation="none")  # generated, trusted code (the flow test uses bwrap)
    for shard in evaluate.plan(tsv, spec, config, shard_rows=4):
        evaluate.eval_shard(shard, home, spec, config)
    hostile_shard(home)
    return home


@pytest.fixture(scope="module")
def pages(home):
    return Pages(db.Catalog(home), LiveLinks())


@pytest.fixture(scope="module")
def run_id(pages):
    return next(r["run_id"] for r in pages.db.query("agent_runs") if r["run_id"] != HOSTILE_RUN)


def sample_rows(html: str) -> list[str]:
    return re.findall(r'<tr class="sample [^"]*" data-outcome="([^"]*)"', html)


def test_every_model_written_string_is_escaped(pages):
    html = pages.trajectory(HOSTILE_RUN, f"bench:{HOSTILE}")
    assert "<script>" not in html.split("<script src=")[0] and 'alert("x")</script>' not in html
    assert "&lt;script&gt;" in html  # shown, as text
    assert "onerror=alert(1)>" not in html and "<b>" not in html
    assert "catalog.duckdb" not in re.findall(r'src="([^"]*)"', html).__str__()  # no image from outside the store
    for page in (pages.samples(HOSTILE_RUN, "", "", {}), pages.eval_run(HOSTILE_RUN), pages.runs()):
        assert "<script>alert" not in page and "onerror=alert(1)>" not in page


def test_server_serves_only_image_store_files(home, tmp_path):
    (home.root / "secret.txt").write_text("secret")
    sha, rel = store(home, Image.new("RGB", (8, 8), (1, 2, 3)))
    outside = tmp_path / "outside.png"
    outside.write_bytes((home.root / rel).read_bytes())
    link_sha = "ab" + "0" * 62
    link = home.images_dir / "ab" / f"{link_sha}.png"
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(outside)  # a well-named file that leads out of the store
    httpd = server.make(home, port=0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def get(path, method="GET", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", httpd.server_port, timeout=30)
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type"), r.getheader("Content-Security-Policy"), r.read()

    try:
        status, ctype, csp, body = get("/" + rel)
        assert (status, ctype) == (200, "image/png") and body == (home.root / rel).read_bytes()
        assert "script-src 'self'" in csp
        for bad in ["/images/../secret.txt", "/images/%2e%2e/secret.txt", "/images/..%2fsecret.txt",
                    f"/images/{sha[:2]}/../../secret.txt", "/images//etc/passwd", "/catalog.duckdb", "/secret.txt",
                    f"/images/ab/{link_sha}.png", f"/images/{sha[:2]}/{sha}.txt", f"/images/zz/{sha}.png",
                    "/static/../db.py", "/static/viewer.css/../../db.py", "/static/%2e%2e/server.py"]:
            status, _, _, body = get(bad)
            assert status == 404, bad
            assert b"secret" not in body
        assert get("/static/viewer.css")[0] == 200 and get("/static/pygments.css")[0] == 200
        assert get("/", "POST")[0] == 405
        assert get("/", headers={"Host": "rebound.example:80"})[0] == 403  # DNS rebinding
        assert get("/", headers={"Host": f"localhost:{httpd.server_port}"})[0] == 200
        assert get("/trajectory?run=nope&sample=x")[0] == 404
    finally:
        httpd.shutdown()
        httpd.server_close()
        link.unlink()
    assert images.resolve(home, "images/../secret.txt") is None and images.resolve(home, rel) is not None


def _scene():
    rng = np.random.default_rng(5)
    return Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).resize((500, 400), Image.BILINEAR)


@pytest.mark.parametrize("box, size, expect", [
    ((100, 80, 260, 200), None, True),  # a plain crop: found where it is
    ((100, 80, 260, 200), (480, 360), True),  # the same region zoomed 3x
    ((300, 250, 364, 314), None, True),  # the 64 px minimum crop
    ((0, 0, 500, 400), (250, 200), True),  # the whole image shrunk: the whole image
])
def test_crop_region_is_found_from_the_pixels(box, size, expect):
    scene = _scene()
    crop = scene.crop(box)
    crop = crop.resize(size) if size else crop
    region = crops.locate(np.asarray(scene), np.asarray(crop))
    assert region is not None
    assert max(abs(a - b) for a, b in zip((region.x1, region.y1, region.x2, region.y2), box)) <= 2


@pytest.mark.parametrize("make", [
    lambda s: s.rotate(90, expand=True),  # a rotation is not a crop: no box rather than a guess
    lambda s: Image.new("RGB", (80, 80), (128, 128, 128)),  # flat: would match anywhere
    lambda s: Image.fromarray(np.random.default_rng(9).integers(0, 255, (90, 120, 3), dtype=np.uint8)),  # unrelated
])
def test_no_region_for_what_is_not_a_crop(make):
    scene = _scene()
    assert crops.locate(np.asarray(scene), np.asarray(make(scene))) is None


def test_trajectory_page_draws_the_crop_the_code_made(pages, run_id):
    # demo row 1: square at (57, 43), the code crops (47, 33, 107, 93)
    html = pages.trajectory(run_id, "demo_bench:1")
    boxes = re.findall(r'class="box" data-round="(\d+)" data-x1="(\d+)" data-y1="(\d+)" data-x2="(\d+)" data-y2="(\d+)"',
                       html)
    assert ("0", "47", "33", "107", "93") in boxes
    assert 'class="status ok" data-status="ok"' in html and 'id="correctness">correct<' in html
    failed = pages.trajectory(run_id, "demo_bench:0")  # round 0 fails (NameError), round 1 crops
    assert 'data-status="error">error: NameError' in failed and 'id="correctness">wrong<' in failed


def test_filters_change_the_rows(pages, run_id):
    every = sample_rows(pages.samples(run_id, "", "", {}))
    assert len(every) == 6
    assert sample_rows(pages.samples(run_id, "", "", {"outcome": "wrong"})) == ["wrong", "wrong"]  # rows 0 and 3
    assert len(sample_rows(pages.samples(run_id, "", "", {"outcome": "correct"}))) == 4
    assert len(sample_rows(pages.samples(run_id, "", "", {"error_type": "NameError"}))) == 2  # rows 0 and 4
    assert len(sample_rows(pages.samples(run_id, "demo_bench", "color", {}))) == 3
    assert sample_rows(pages.samples(run_id, "", "", {"q": "no such words"})) == []
    assert len(sample_rows(pages.samples(run_id, "", "", {"q": "COLOUR"}))) == 6
    assert len(sample_rows(pages.samples(run_id, "", "", {}, limit=4))) == 4


def test_a_republished_shard_is_counted_once(home, tmp_path):
    copy = DataHome(tmp_path / "copy")
    shutil.copytree(home.root, copy.root, symlinks=True)
    first = sorted((copy.shards_dir / "agent").glob("eval-*"))[0]
    shutil.copytree(first, first.with_name("zz-" + first.name))  # the same rows again, another folder
    cat = db.Catalog(copy)
    counts = "SELECT (SELECT count(*) FROM trajectories) t, (SELECT count(*) FROM executions) e, " \
             "(SELECT count(*) FROM turns) u, (SELECT count(*) FROM eval_results) r"
    again = cat.sql(counts)
    import pyarrow.parquet as pq

    assert cat.shadowed == pq.read_metadata(first / "trajectories.parquet").num_rows > 0
    assert again == db.Catalog(home).sql(counts)


# The agent views as schema.sql declared them before (a window over every row): the reference the fast forms match.
WINDOW_VIEWS = {
    "trajectories": "SELECT * FROM read_parquet('shards/agent/*/trajectories.parquet') "
                    "QUALIFY row_number() OVER (PARTITION BY run_id, sample_id ORDER BY total_s) = 1",
    "turns": "SELECT * FROM read_parquet('shards/agent/*/turns.parquet') "
             "QUALIFY row_number() OVER (PARTITION BY run_id, sample_id, round ORDER BY generated_tokens) = 1",
    "executions": "SELECT * FROM read_parquet('shards/agent/*/executions.parquet') "
                  "QUALIFY row_number() OVER (PARTITION BY run_id, sample_id, round ORDER BY duration_s) = 1",
    "eval_results": "SELECT * FROM read_parquet('shards/agent/*/eval_results.parquet', union_by_name = true) "
                    "QUALIFY row_number() OVER (PARTITION BY run_id, benchmark, \"index\" ORDER BY sample_id) = 1",
}


def test_the_fast_views_keep_the_rows_the_window_views_kept(home, tmp_path):
    import duckdb
    import pyarrow.parquet as pq

    from thyme_core import catalog as core
    from thyme_core.versions.push import push
    from thyme_core.versions.query import query_version
    from thyme_core.versions.store import open_store

    copy = DataHome(tmp_path / "copy")
    shutil.copytree(home.root, copy.root, symlinks=True)
    first = sorted((copy.shards_dir / "agent").glob("eval-*"))[0]
    again = first.with_name("0-" + first.name)  # a copy that sorts first: the original is shadowed
    again.mkdir()
    for part in first.glob("*.parquet"):  # the same rows in other bytes (so a version stores both objects)
        pq.write_table(pq.read_table(part), again / part.name, compression="snappy")
    core.publish(copy)
    reader = db.Catalog(copy)
    cli = duckdb.connect(str(copy.catalog_path), read_only=True, config={"file_search_path": str(copy.root)})
    store = open_store(str(tmp_path / "store"))
    push(copy, store, "withcopy")
    assert reader.shadowed > 0
    for view, window in WINDOW_VIEWS.items():
        want = cli.execute(f"SELECT * FROM ({window}) ORDER BY ALL").fetchall()
        assert len(want) > 0, view
        assert [tuple(r.values()) for r in reader.sql(f"SELECT * FROM {view} ORDER BY ALL")] == want, view
        assert cli.execute(f"SELECT * FROM {view} ORDER BY ALL").fetchall() == want, view  # catalog.duckdb's
        assert query_version(store, "withcopy", f"SELECT * FROM {view} ORDER BY ALL")[1] == want, view  # in place


EVAL_BEHAVIOUR_BEFORE = """
WITH ex AS (
    SELECT run_id, sample_id, count(*) AS executions, count(*) FILTER (WHERE status = 'ok') AS ok
    FROM executions WHERE run_id IN (SELECT DISTINCT run_id FROM eval_results) GROUP BY run_id, sample_id
)
SELECT t.run_id, t.sample_id, t.response, t.rounds, coalesce(ex.executions, 0) AS executions,
       coalesce(ex.ok, 0) AS ok, r.correct
FROM trajectories t
JOIN eval_results r ON r.run_id = t.run_id AND r.sample_id = t.sample_id
LEFT JOIN ex ON ex.run_id = t.run_id AND ex.sample_id = t.sample_id
ORDER BY t.run_id, t.sample_id"""


def test_eval_behaviour_gives_the_rows_it_gave_when_it_grouped_every_execution(home, pages, run_id):
    from thyme_core.eval.behaviour import run_behaviour

    before = pages.db.sql(EVAL_BEHAVIOUR_BEFORE)
    statuses = {r["status"] for r in pages.db.sql("SELECT status FROM executions")}
    assert len(before) > 6 and {"ok", "error"} <= statuses  # successes and failures both counted
    runs = sorted({r["run_id"] for r in before})
    assert runs == sorted([run_id, HOSTILE_RUN])  # (two runs: each one's rows, none of the other's)
    assert [row for run in runs for row in pages.db.query("eval_behaviour", run_id=run)] == before
    mine = [r for r in before if r["run_id"] == run_id]
    assert run_behaviour(home, run_id)["code_use"] == round(sum(r["executions"] > 0 for r in mine) / len(mine), 4)


def test_the_server_pays_its_start_up_costs_before_the_first_page(home):
    from thyme_core.viewer import pages as pages_module

    pages_module._env.cache.clear()
    server.App(home)
    assert len(pages_module._env.cache) == len(pages_module._env.list_templates())  # every template compiled


def test_viewer_and_export_never_write_to_the_home(home, pages, run_id, tmp_path):
    def snapshot():
        return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in home.root.rglob("*")}

    before = snapshot()
    pages.runs(), pages.eval_run(run_id), pages.trajectory(run_id, "demo_bench:2")
    counts = export(home, tmp_path / "out")
    assert snapshot() == before  # no file added, none changed (catalog.duckdb included)
    assert counts["pages"] >= 1 + 2 + 8 and counts["images"] >= 7
    out = tmp_path / "out"
    for page in out.glob("*.html"):
        html = page.read_text()
        for ref in re.findall(r'(?:href|src)="(?!data:)([^"#?]+)"', html):
            assert (out / ref).is_file(), f"{page.name} links to missing {ref}"
    with pytest.raises(Exception, match="exists"):
        export(home, out)


def test_missing_things_are_not_found(pages):
    for call in (lambda: pages.trajectory("eval-x", "y"), lambda: pages.eval_run("nope"),
                 lambda: pages.rl_run("nope"), lambda: pages.sft_run(1, "../../etc")):
        with pytest.raises(NotFound):
            call()


def test_an_empty_home_still_binds_every_named_query(tmp_path):
    from thyme_core import catalog as core

    from tests.conftest import named_query_params

    cat = db.Catalog(DataHome(tmp_path).ensure())
    for name in core.named_queries():
        assert cat.query(name, **dict(named_query_params(name))) == [], name
    Pages(cat, LiveLinks()).runs()


def test_artifact_links_only_with_a_configured_viewer(monkeypatch):
    monkeypatch.delenv(links.VIEWER_URL_ENV, raising=False)
    assert links.markdown_link("eval", "eval-abc") == ""
    monkeypatch.setenv(links.VIEWER_URL_ENV, "http://127.0.0.1:8765/")
    assert links.viewer_url("eval", "eval-abc") == "http://127.0.0.1:8765/eval?run=eval-abc"
    assert "(http://127.0.0.1:8765/rl?key=k1)" in links.markdown_link("rl", "k1")


def test_runs_page_lists_prepared_and_replayed_data_and_training_runs(tmp_path):
    from thyme_core import prepare
    from thyme_core.replay.verify import ReplayConfig, replay_shard
    from thyme_core.synth import generate_records
    from thyme_core.synth.writer import write_parquet

    home = DataHome(tmp_path / "home").ensure()
    write_parquet(tmp_path / "sft.parquet", list(generate_records("wo_thinking_thyme_single_round", 3, 0, 320, 240, 1)))
    config = prepare.PrepareConfig(shard_rows=3)
    (spec,) = prepare.plan(tmp_path / "sft.parquet", "sft", config)
    prepare.prepare_shard(spec, home, config)
    replay_shard(prepare.shard_dir(home, spec.key), home, ReplayConfig(isolation="none"))  # generated, trusted code
    run = home.root / "runs" / "sft" / "stage2" / "k2"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"home": "/x", "dataset": "d123", "config": "c456", "code": "v789"}))
    (run / "metrics.jsonl").write_text('{"event": "resumed", "step": 1}\n{"step": 2, "loss": 1.5}\nnot json\n')
    html = Pages(db.Catalog(home), LiveLinks()).runs()
    prepared = re.search(r'<table id="prepare-runs">(.*?)</table>', html, re.S).group(1)
    assert "<td>sft</td>" in prepared and "<td>3</td>" in prepared  # 3 rows in
    replayed = re.search(r'<table id="replay-runs">(.*?)</table>', html, re.S).group(1)
    assert "<td>sft</td>" in replayed
    sft = re.search(r'<table id="sft-runs">(.*?)</table>', html, re.S).group(1)
    assert "stopped at step 2" in sft and "d123" in sft and "v789" in sft


def test_runs_page_shows_each_recorded_run_with_key_config_inputs_and_status(tmp_path):
    from thyme_core import prepare
    from thyme_core.replay.verify import ReplayConfig, replay_key, replay_shard
    from thyme_core.runs import plans
    from thyme_core.synth import generate_records
    from thyme_core.synth.writer import write_parquet

    home = DataHome(tmp_path / "home").ensure()
    write_parquet(tmp_path / "sft.parquet", list(generate_records("wo_thinking_thyme_single_round", 4, 0, 320, 240, 1)))
    config = prepare.PrepareConfig(shard_rows=2)
    specs = prepare.plan(tmp_path / "sft.parquet", "sft", config)
    specs.append(dataclasses.replace(specs[0], key="0" * 24, row_start=4, row_stop=6))  # planned, never run
    prepared = plans.start_prepare(home, str(tmp_path / "sft.parquet"), "sft", specs, config)
    prepare.prepare_shard(specs[0], home, config)
    rconfig = ReplayConfig(isolation="none")  # generated, trusted code
    done_dir = str(prepare.shard_dir(home, specs[0].key))
    replayed = plans.start_replay(home, "sft", "", [done_dir], replay_key, rconfig)
    replay_shard(prepare.shard_dir(home, specs[0].key), home, rconfig)
    plans.finish(home, "replay", replayed, {"dataset": "sft@abc123"})
    failed = plans.start_replay(home, "sft", "", [done_dir, done_dir + "x"], replay_key, rconfig)
    plans.finish(home, "replay", failed, error=f"RuntimeError: {HOSTILE}")
    html = Pages(db.Catalog(home), LiveLinks()).runs()
    table = re.search(r'<table id="stage-runs">(.*?)</table>', html, re.S).group(1)
    rows = {key: (kind, status, shards, rest) for kind, key, status, shards, rest in re.findall(
        r'<tr class="stage-run" data-status="[^"]*"><td>(\w+)</td>\s*<td><code>(\w+)</code></td>\s*'
        r'<td class="status">([^<]*)(?:<span[^>]*>[^<]*</span>)?</td>\s*<td>(\d+ / \d+)</td>(.*?)</tr>', table, re.S)}
    assert rows[prepared][:3] == ("prepare", "partial", "1 / 2")
    assert rows[replayed][:3] == ("replay", "done", "1 / 1") and "sft@abc123" in rows[replayed][3]
    assert rows[failed][:3] == ("replay", "failed ", "1 / 2")
    assert HOSTILE not in html and "RuntimeError: &lt;script&gt;" in table  # the error is shown, escaped
    # config in full, inputs with the source file's sha256
    assert '&#34;shard_rows&#34;: 2' in rows[prepared][3] and specs[0].file_sha256 in rows[prepared][3]
