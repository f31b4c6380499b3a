"""Catalog reads and writes (thyme_core.catalog): reads never write and run beside each other and beside
publishers; named queries and SQL text are separate calls."""

import os
import threading

import duckdb
import pytest

from thyme_core import catalog
from thyme_core.base.errors import ThymeError


def _tree(root):
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_a_read_writes_nothing(home):
    catalog.publish(home)
    before = _tree(home.root)
    catalog.named(home, "counts_by_split")
    catalog.query(home, "SELECT count(*) FROM images")
    catalog.read(home).close()
    assert _tree(home.root) == before


def test_a_read_of_a_home_without_a_catalog_is_a_clear_error_and_creates_nothing(tmp_path):
    from thyme_core.base.home import DataHome

    home = DataHome(tmp_path / "never-used")
    with pytest.raises(ThymeError, match="no catalog here yet"):
        catalog.query(home, "SELECT 1")
    assert not home.root.exists()


def test_reads_run_while_another_process_holds_the_catalog_file(home):
    catalog.publish(home)
    holder = duckdb.connect(str(home.catalog_path))  # e.g. a user's duckdb CLI with the file open for writing
    try:
        assert catalog.named(home, "counts_by_split")[1] == []
    finally:
        holder.close()


def test_concurrent_reads_and_publishes_all_succeed(home):
    catalog.publish(home)
    errors = []

    def work(i):
        try:
            for _ in range(5):
                if i % 2:
                    catalog.query(home, "SELECT count(*) FROM sft_samples")
                else:
                    home.catalog_path.with_name("catalog.duckdb.schema-sha256").unlink(missing_ok=True)
                    catalog.publish(home)  # forced rewrite of catalog.duckdb under the readers
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    assert duckdb.connect(str(home.catalog_path), read_only=True).execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = 'sft_samples'").fetchone()[0] == 1
    assert not [p for p in home.tmp_dir.iterdir() if p.name.startswith(".catalog.")]  # no staging left


def test_named_and_sql_are_separate_calls(home):
    catalog.publish(home)
    with pytest.raises(ThymeError, match="no named query 'SELECT 1'; named queries: .*counts_by_split"):
        catalog.named(home, "SELECT 1")
    with pytest.raises(ThymeError, match="query failed"):
        catalog.query(home, "counts_by_split")  # a name is not SQL: no guessing between the two
    with pytest.raises(ThymeError, match="no named query"):
        catalog.named(home, "../schema")  # names never reach outside sql/queries


def test_the_duckdb_file_declares_the_views_for_the_cli(home):
    catalog.publish(home)
    con = duckdb.connect(str(home.catalog_path), read_only=True, config={"file_search_path": str(home.root)})
    assert con.execute("SELECT count(*) FROM sft_samples").fetchone() == (0,)
    assert os.path.exists(str(home.catalog_path) + ".schema-sha256")


def test_rl_steps_published_before_the_reward_parts_read_them_as_null(home):
    import pyarrow.parquet as pq

    from thyme_core.catalog.schema import RlRolloutRecord, to_table

    row = RlRolloutRecord("rl-k", 1, 0, 0, "p0", "s00001/p0:0", 1.5, "", 1.0, 1.0, None, 0.5, True, "")
    old = to_table(RlRolloutRecord, [row]).drop_columns(["reward_format", "reward_accuracy", "reward_consistency"])
    catalog.publish(home)
    # a step and the home's typed empty part both written before the parts existed
    (home.shards_dir / "rl" / "k" / "step-00001").mkdir(parents=True)
    pq.write_table(old, home.shards_dir / "rl" / "k" / "step-00001" / "rl_rollouts.parquet")
    pq.write_table(old.slice(0, 0), home.shards_dir / "rl" / "_schema" / "rl_rollouts.parquet")
    sql = "SELECT reward, reward_format, reward_consistency FROM rl_rollouts"
    assert catalog.query(home, sql)[1] == [(1.5, None, None)]
    catalog.publish(home)  # the next publish brings the empty part up to date: the CLI's glob view binds too
    con = duckdb.connect(str(home.catalog_path), read_only=True, config={"file_search_path": str(home.root)})
    assert con.execute(sql).fetchall() == [(1.5, None, None)]


def test_the_agent_view_statements_survive_a_semicolon_in_a_comment():
    from thyme_core.catalog import views

    call = "agent_part(['shards/agent/*/turns.parquet'], ['shards/agent/*/turns.parquet'], false, false)"
    text = f"-- a note; with a semicolon\nCREATE VIEW turns AS\n-- and here; too\nSELECT * FROM {call};\nSELECT 1;"
    assert views.agent_statements(text) == [f"CREATE VIEW turns AS\nSELECT * FROM {call}"]
    assert len(views.agent_statements(catalog.sql_text("schema"))) == 4  # trajectories, turns, executions, eval_results
