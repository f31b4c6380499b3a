"""Shard planning and reading: file-level errors name the file and column; shards tile the rows."""

import json
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.prepare import digests
from thyme_core.prepare.source import plan_shards, read_shard


def _rows(n):
    return [{"image": [], "question": f"q{i}", "response": f"r{i}"} for i in range(n)]


def _parquet(path, rows, row_group_size=3, **overrides):
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("image", pa.list_(pa.string())), ("question", pa.string()), ("response", pa.string())]))
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def test_parquet_shards_follow_row_groups_and_tile_the_rows(tmp_path):
    path = _parquet(tmp_path / "a.parquet", _rows(100), row_group_size=3)
    specs = plan_shards(path, "s", shard_rows=5, salt="x")
    # 100 rows make 16 shards of >= 5 rows: whole row groups of 3, so 6 rows each, then 3+1
    assert [(s.row_start, s.row_stop) for s in specs] == [(i, i + 6) for i in range(0, 96, 6)] + [(96, 100)]
    rows = [r for s in specs for r in read_shard(s)]
    assert [n for n, _ in rows] == list(range(100))
    assert [r["question"] for _, r in rows] == [f"q{i}" for i in range(100)]


def test_a_small_file_of_large_rows_still_gives_every_core_several_shards(tmp_path):
    # the case: 3,000 photos in 12 row groups with the default 1,000 rows per shard made 3 shards,
    # so one of 2 cores idled for the last third; each row group is now a shard
    path = _parquet(tmp_path / "a.parquet", _rows(3000), row_group_size=250)
    assert len(plan_shards(path, "s", shard_rows=1000, salt="x")) == 12
    # a large file keeps shard_rows
    big = _parquet(tmp_path / "b.parquet", _rows(20_000), row_group_size=500)
    assert [s.row_stop - s.row_start for s in plan_shards(big, "s", shard_rows=1000, salt="x")] == [1000] * 20


def test_jsonl_shards_by_lines_and_bad_lines_become_error_strings(tmp_path):
    path = tmp_path / "a.jsonl"
    lines = [json.dumps(r) for r in _rows(4)] + ["{not json", "", "[1, 2]", json.dumps(_rows(1)[0])]
    path.write_text("\n".join(lines) + "\n")
    specs = plan_shards(path, "s", shard_rows=3, salt="x")
    # 7 rows (the blank line is skipped) are fewer than 16 shards' worth: one row each
    assert [(s.row_start, s.row_stop) for s in specs] == [(i, i + 1) for i in range(7)]
    rows = dict(r for s in specs for r in read_shard(s))
    assert rows[0]["question"] == "q0"
    assert "not valid JSON" in rows[4]
    assert "not an object" in rows[5]  # a JSON list is no record
    assert rows[6]["question"] == "q0"


def test_keys_are_stable_and_change_with_content_split_or_salt(tmp_path):
    path = _parquet(tmp_path / "a.parquet", _rows(4))
    key = lambda **kw: plan_shards(kw.get("p", path), kw.get("split", "s"), 10, kw.get("salt", "x"))[0].key
    assert key() == key()
    assert key(split="t") != key()
    assert key(salt="y") != key()
    other = _parquet(tmp_path / "b.parquet", _rows(5))
    assert key(p=other) != key()


def test_the_digest_cache_skips_rehashing_only_while_the_file_is_unchanged(tmp_path, monkeypatch):
    home = DataHome(tmp_path / "home")
    path = tmp_path / "a.jsonl"
    path.write_text('{"image": [], "question": "what?", "response": "A"}\n')
    hashed = []
    real = digests.file_sha256
    monkeypatch.setattr(digests, "file_sha256", lambda p: hashed.append(p) or real(p))
    key = lambda: plan_shards(path, "s", 10, "x", home)[0].key
    first = key()
    assert key() == first and len(hashed) == 2  # written just now: not remembered (racy)
    monkeypatch.setattr(digests, "RACY_S", 0)
    assert key() == first and key() == first and len(hashed) == 3  # the rerun's plan read nothing
    stat = path.stat()
    time.sleep(0.05)  # past the filesystem's timestamp tick
    path.write_text('{"image": [], "question": "why?", "response": "B"}\n')  # same size, same mtime, new bytes
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert key() != first and len(hashed) == 4  # ctime moved: hashed again
    assert key() == plan_shards(path, "s", 10, "x")[0].key  # the cache agrees with no cache


def test_folder_source_lists_parquet_and_jsonl_sorted(tmp_path):
    _parquet(tmp_path / "b.parquet", _rows(2))
    (tmp_path / "a.jsonl").write_text(json.dumps(_rows(1)[0]) + "\n")
    (tmp_path / "notes.txt").write_text("ignored")
    specs = plan_shards(tmp_path, "s", 100, "x")
    assert [s.path.rsplit("/", 1)[1] for s in specs] == ["a.jsonl", "b.parquet"]


@pytest.mark.parametrize(
    "schema, message",
    [
        # the question column is absent: the error names it and what the file has
        (pa.schema([("image", pa.list_(pa.string())), ("response", pa.string())]), "missing column 'question'"),
        # images given as one string, not a list of them
        (pa.schema([("image", pa.string()), ("question", pa.string()), ("response", pa.string())]),
         "column 'image' has type string"),
        (pa.schema([("image", pa.list_(pa.string())), ("question", pa.int64()), ("response", pa.string())]),
         "column 'question' has type int64"),
    ],
)
def test_bad_parquet_schema_names_file_and_column(tmp_path, schema, message):
    path = tmp_path / "bad.parquet"
    pq.write_table(schema.empty_table(), path)
    with pytest.raises(ThymeError, match=message) as err:
        plan_shards(path, "s", 10, "x")
    assert str(path) in str(err.value)


def test_unreadable_and_missing_sources_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"this is not parquet")
    with pytest.raises(ThymeError, match="junk.parquet: not a readable Parquet file"):
        plan_shards(junk, "s", 10, "x")
    with pytest.raises(ThymeError, match="no such file"):
        plan_shards(tmp_path / "nope.parquet", "s", 10, "x")
    with pytest.raises(ThymeError, match="split 'a/b'"):
        plan_shards(junk, "a/b", 10, "x")
