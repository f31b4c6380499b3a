"""The prepare_sft_data flow through the real CLI against a real Prefect server: results, artifacts,
kill-and-resume convergence, and a bad file failing cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.integration.conftest import BIN, REPO, thyme
from thyme_core import catalog
from thyme_core.base.home import DataHome
from thyme_core.synth import bad, generate_records
from thyme_core.synth.writer import SCHEMA

SPLIT = "2round"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """24 synthetic 2-round samples plus a few damaged ones, in 3-row row groups."""
    rows = list(generate_records(SPLIT, 24, 3, 256, 192, 1))
    rows += [bad.with_image(rows[0], bad.truncated_jpeg(), 1), bad.missing_processed_image(rows[1]).record]
    path = tmp_path_factory.mktemp("src") / "data.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path, row_group_size=3)
    return path


def catalog_state(home_root) -> dict:
    """Everything a user can see in the catalog, order-free."""
    con = catalog.read(DataHome(home_root))
    q = lambda sql: sorted(con.execute(sql).fetchall())
    state = {
        "samples": q("SELECT id, source_row, question, response, image_paths FROM sft_samples"),
        "rejects": q("SELECT source_row, reason, detail FROM rejects"),
        "images": q("SELECT sha256, path, bytes FROM images"),
        "shards": q("SELECT shard, row_start, row_stop, samples_image, rejects FROM prepare_shards"),
    }
    con.close()
    return state


def test_prepare_runs_on_the_server_and_publishes_its_summary(source, tmp_path, thyme_env, prefect_server):
    out = thyme("prepare", source, "--split", SPLIT, "--home", tmp_path / "home", "--shard-rows", 6, env=thyme_env)
    state = catalog_state(tmp_path / "home")
    # 26 rows ask for 16 shards of >= 2 rows (fewer than 16 x 6): one row group of 3 each, so 9
    assert len(state["samples"]) == 24 and len(state["shards"]) == 9
    assert sorted(r[1] for r in state["rejects"]) == ["image_count_mismatch", "truncated_image"]
    assert "images:" in out.stdout + out.stderr

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def server_view():
        with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
            async with get_client() as client:
                runs = await client.read_flow_runs()
                arts = await client.read_artifacts(
                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["prepare-2round"])))
                return runs, arts

    runs, arts = asyncio.run(server_view())
    assert any(r.state_type.value == "COMPLETED" for r in runs)
    assert arts and "rejects of `2round` by reason" in arts[0].data.lower()


def test_kill_mid_run_then_rerun_equals_uninterrupted_run(source, tmp_path, thyme_env):
    thyme("prepare", source, "--split", SPLIT, "--home", tmp_path / "clean", "--shard-rows", 3, env=thyme_env)
    killed_home = tmp_path / "killed"
    proc = subprocess.Popen([str(BIN / "thyme"), "prepare", str(source), "--split", SPLIT, "--home", str(killed_home),
                             "--shard-rows", "3"], env=thyme_env, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = killed_home / "shards" / "prepare"
    deadline = time.time() + 120
    while not (shards.exists() and any(p.name != "_schema" for p in shards.iterdir())):
        assert proc.poll() is None and time.time() < deadline, "run ended before a shard was published"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its Prefect workers, everything
    proc.wait()
    done_before = sum(1 for p in shards.iterdir() if p.name != "_schema")
    assert 0 < done_before < 9, "the kill should land mid-run"
    out = thyme("prepare", source, "--split", SPLIT, "--home", killed_home, "--shard-rows", 3, env=thyme_env)
    assert f"{done_before} already done" in out.stdout + out.stderr
    assert catalog_state(killed_home) == catalog_state(tmp_path / "clean")


def test_bad_file_fails_clearly_and_writes_nothing(tmp_path, thyme_env):
    bad_file = tmp_path / "no_response.parquet"
    pq.write_table(pa.table({"image": [["eA=="]], "question": ["q"]}), bad_file)
    out = thyme("prepare", bad_file, "--split", SPLIT, "--home", tmp_path / "home", env=thyme_env, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr  # one line, not Prefect's traceback
    assert out.stderr.strip().splitlines()[-1].startswith("thyme prepare: error: ")
    assert "no_response.parquet: missing column 'response'" in out.stderr
    shards = tmp_path / "home" / "shards" / "prepare"
    assert not shards.exists() or [p.name for p in shards.iterdir()] == ["_schema"]


def test_prepare_a_hub_dataset_from_the_offline_cache(tmp_path, thyme_env, prefect_server):
    """`thyme prepare hf://datasets/...` with HF_HUB_OFFLINE=1 reads what `huggingface-cli download` left (the
    cache layout and the `datasets` export are built by tests/unit/test_hub_source.py's helpers)."""
    from tests.unit.test_hub_source import REPO, SHA1, repo_files, write_cache

    cache = tmp_path / "hf-cache"
    write_cache(cache, SHA1, repo_files(tmp_path, 4))
    env = {**thyme_env, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    home = tmp_path / "home"
    thyme("prepare", f"hf://datasets/{REPO}", "--split", "hub", "--home", home, "--shard-rows", 2, env=env)
    _, rows = catalog.query(DataHome(home), "SELECT count(*), min(source_file) FROM sft_samples")
    assert rows == [(4, "data/train.parquet")]
