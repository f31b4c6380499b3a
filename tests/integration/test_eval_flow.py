"""`thyme eval` through the real CLI against a real Prefect server, with the isolated sandbox: a small
hand-made benchmark (generated images) scored exactly with the scripted backend; a re-run skips finished
shards and redoes only a missing one; the report is a Prefect artifact. Also `thyme infer`."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests.integration.conftest import thyme
from thyme_core import catalog
from thyme_core.eval import benchmarks
from thyme_core.synth.benchmark import write_demo_benchmark
from thyme_core.base.home import DataHome


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_demo_benchmark(tmp_path_factory.mktemp("bench"), n=9)


def eval_rows(home_root):
    _, rows = catalog.query(DataHome(home_root), "SELECT index, category, choice, answer, correct FROM eval_results "
                                                  "ORDER BY index::INT")
    return rows


def test_eval_scores_exactly_and_a_rerun_skips_finished_shards(bench, tmp_path, thyme_env, prefect_server):
    tsv, responses = bench
    home = tmp_path / "home"
    args = ("eval", tsv, "--backend", "scripted", "--response-file", responses, "--home", home, "--shard-rows", 4)
    out = thyme(*args, env=thyme_env)
    # right: every index not divisible by 3 (the script answers 0, 3, 6 with the next letter)
    assert "6/9 correct (0/3 shards already done)" in out.stdout
    rows = eval_rows(home)
    assert [r[4] for r in rows] == [i % 3 != 0 for i in range(9)]
    assert [r[1] for r in rows] == ["color" if i % 2 == 0 else "color-hard" for i in range(9)]
    _, by_category = catalog.named(DataHome(home), "eval_accuracy")
    assert sorted(r[2:5] for r in by_category) == [("(all)", 9, 6), ("color", 5, 3), ("color-hard", 4, 3)]
    _, execs = catalog.named(DataHome(home), "exec_success_by_round")
    assert [(r[0], r[1], r[2]) for r in execs] == [(0, 9, 6), (1, 3, 3)]  # 0, 4, 8 fail once, then succeed

    again = thyme(*args, env=thyme_env)
    assert "6/9 correct (3/3 shards already done)" in again.stdout
    shards = sorted((home / "shards" / "agent").glob("eval-*"))
    shutil.rmtree(shards[0])  # as if that shard had been killed before publishing
    third = thyme(*args, env=thyme_env)
    assert "6/9 correct (2/3 shards already done)" in third.stdout
    assert eval_rows(home) == rows
    # the run recorded itself for the viewer's runs page: key, status, shards, inputs, config
    from thyme_core.runs import plans

    (run,) = plans.stage_runs(DataHome(home))
    assert (run.kind, run.status, run.planned, run.published) == ("eval", "done", 3, 3)
    assert run.key.startswith("eval-")
    assert run.inputs["tsv_sha256"] == benchmarks.file_sha256(tsv) and run.config["backend"]["name"] == "scripted"

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def artifacts():
        with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
            async with get_client() as client:
                return await client.read_artifacts()

    # (the session's server also holds other tests' eval reports, some under the same key: find ours)
    reports = [a for a in asyncio.run(artifacts()) if a.key and a.key.startswith("eval-")]
    assert any("| demo_bench | (all) | 9 | 6 | 66.67 |" in a.data for a in reports)


def test_infer_prints_and_records_a_trajectory(bench, tmp_path, thyme_env):
    import base64

    row = benchmarks.read_rows(bench[0], 1, 2)[0]
    image = tmp_path / "q.png"
    image.write_bytes(base64.b64decode(row.image_b64))
    response = tmp_path / "r.txt"
    response.write_text(bench[1].read_text().splitlines()[1].split('"response": ')[1][:-1]
                        .encode().decode("unicode_escape").strip('"'))
    out = thyme("infer", "--image", image, "--question", row.prompt(), "--backend", "scripted",
                "--response-file", response, "--home", tmp_path / "home", env=thyme_env)
    assert "--- sandbox: ok" in out.stdout and "=== answer: 'B'" in out.stdout
    _, rows = catalog.query(DataHome(tmp_path / "home"), "SELECT run_id, answer, rounds, stop_reason FROM trajectories")
    assert rows == [("infer", "B", 1, "answer")]
