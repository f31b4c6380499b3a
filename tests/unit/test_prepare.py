"""prepare_shard end to end without Prefect: synthetic Thyme data with every kind of bad record mixed in."""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thyme_core import catalog, prepare
from thyme_core.base.reasons import Reject
from thyme_core.synth import bad, generate_records
from thyme_core.synth.writer import SCHEMA

CONFIG = prepare.PrepareConfig(shard_rows=5)


@pytest.fixture(scope="module")
def good_rows():
    return [*generate_records("2round", 4, 0, 320, 240, 1), *generate_records("computation", 4, 0, 320, 240, 1)]


def _write(path, rows, row_group_size=5):
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path, row_group_size=row_group_size)
    return path


def _run(home, source, split="s", config=CONFIG):
    return [prepare.prepare_shard(spec, home, config) for spec in prepare.plan(source, split, config)]


def _mixed_rows(good_rows):
    """Good rows, then one row per bad image payload and per record problem, with the expected reasons."""
    base = good_rows[0]
    rows, expected = list(good_rows), {}
    for payload in bad.bad_images():
        expected[len(rows)] = payload.reason
        rows.append(bad.with_image(base, payload, index=len(base["image"]) - 1))
    for problem in bad.bad_records(base):
        if problem.name == "image_not_list":
            continue  # cannot be stored in a list<string> Parquet column; covered by the JSONL test
        expected[len(rows)] = problem.reason
        rows.append(problem.record)
    return rows, expected


def test_good_and_bad_rows_land_in_the_right_tables(home, tmp_path, good_rows):
    rows, expected = _mixed_rows(good_rows)
    results = _run(home, _write(tmp_path / "mixed.parquet", rows))
    con = catalog.read(home)
    rejects = dict(con.execute("SELECT source_row, reason FROM rejects").fetchall())
    dropped = {row: reason for row, reason in rejects.items() if reason != "duplicate_sample"}
    assert dropped == {row: str(reason) for row, reason in expected.items() if isinstance(reason, Reject)}
    # two conversions can give the very same RGB picture (a GIF and a palette PNG of one image): the second
    # sample is then a duplicate of the first, reported as such
    assert all(not isinstance(expected[row], Reject) for row in set(rejects) - set(dropped))
    kept = {r[0] for r in con.execute("SELECT source_row FROM sft_samples").fetchall()}
    assert kept | set(rejects) == set(range(len(rows)))  # every row is accounted for, exactly once
    assert not kept & set(rejects)
    repairs = {r[0] for r in con.execute("SELECT repair FROM images WHERE repair <> ''").fetchall()}
    assert repairs == {str(r) for r in expected.values() if not isinstance(r, Reject) and str(r)}
    summaries = [r.summary for r in results]
    assert sum(s.rejects for s in summaries) == len(dropped)  # duplicates are found across shards, in SQL


def test_paths_in_the_catalog_point_at_stored_images(home, tmp_path, good_rows):
    _run(home, _write(tmp_path / "good.parquet", good_rows))
    con = catalog.read(home)
    for question, response, paths, path_map in con.execute(
        "SELECT question, response, image_paths, path_map FROM sft_samples WHERE has_image"
    ).fetchall():
        assert all((home.root / p).is_file() for p in paths)
        assert paths[0] in question  # the User Image Path line now names the stored original
        for m in json.loads(path_map):
            assert m["stored"] == paths[m["image_index"]]
            if m["where"] == "sandbox_output":
                assert m["stored"] in response
    by_kind = dict(con.execute("SELECT has_image, count(*) FROM sft_samples GROUP BY ALL").fetchall())
    text_only = sum(1 for r in good_rows if not r["image"])
    assert by_kind.get(False, 0) == text_only and by_kind[True] == len(good_rows) - text_only


def test_rerun_adds_nothing_and_duplicates_are_reported(home, tmp_path, good_rows):
    src = tmp_path / "src"
    src.mkdir()
    source = _write(src / "a.parquet", good_rows)
    first = _run(home, source)
    again = _run(home, source)
    assert all(r.reused for r in again) and [r.summary for r in again] == [r.summary for r in first]
    _write(src / "copy.parquet", good_rows[:3])  # the same samples in a second file
    _run(home, src)
    con = catalog.read(home)
    assert con.execute("SELECT count(*) FROM sft_samples").fetchone()[0] == len(good_rows)
    dups = con.execute("SELECT source_file, reason FROM rejects").fetchall()
    assert dups == [("copy.parquet", "duplicate_sample")] * 3


def test_crash_while_writing_leaves_nothing_visible_and_rerun_converges(home, tmp_path, good_rows, monkeypatch):
    source = _write(tmp_path / "a.parquet", good_rows)
    spec = prepare.plan(source, "s", CONFIG)[0]
    real_write = pq.write_table
    calls = []

    def dying_write(table, where, **kw):
        calls.append(where)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        return real_write(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", dying_write)
    with pytest.raises(OSError):
        prepare.prepare_shard(spec, home, CONFIG)
    monkeypatch.setattr(pq, "write_table", real_write)
    assert not prepare.shard_dir(home, spec.key).exists()
    assert os.listdir(home.tmp_dir) == []
    result = prepare.prepare_shard(spec, home, CONFIG)
    assert not result.reused and result.summary.samples_image + result.summary.samples_text == 5


def test_jsonl_source_with_unparseable_lines(home, tmp_path, good_rows):
    base = good_rows[0]
    lines = [json.dumps(r) for r in good_rows[:2]] + ["{broken", json.dumps(bad.image_not_list(base).record)]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    _run(home, tmp_path / "a.jsonl")
    con = catalog.read(home)
    assert con.execute("SELECT source_row, reason FROM rejects ORDER BY 1").fetchall() == [
        (2, "bad_field"), (3, "bad_field")]
    assert con.execute("SELECT count(*) FROM sft_samples").fetchone()[0] == 2


def test_config_and_code_version_are_in_the_shard_keys(tmp_path, good_rows, monkeypatch):
    source = _write(tmp_path / "a.parquet", good_rows)
    keys = lambda cfg: [s.key for s in prepare.plan(source, "s", cfg)]
    assert keys(CONFIG) == keys(prepare.PrepareConfig(shard_rows=5))
    assert set(keys(CONFIG)).isdisjoint(keys(prepare.PrepareConfig(shard_rows=5, max_pixels=10**6)))
    before = keys(CONFIG)
    monkeypatch.setattr("thyme_core.prepare.shards.code_version", lambda: "another-code-version")
    assert set(before).isdisjoint(keys(CONFIG))  # new code: new keys, so no shard of the old code is reused


def test_staging_debris_of_dead_writers_is_cleared_at_the_next_plan(home, tmp_path, good_rows):
    source = _write(tmp_path / "a.parquet", good_rows)
    dead = home.tmp_dir / ".abc123.999999999.xyz"  # a staging folder of a pid that cannot exist
    dead.mkdir()
    live = home.tmp_dir / f".def456.{os.getpid()}.xyz"  # a concurrent run's: kept
    live.mkdir()
    prepare.plan(source, "s", CONFIG, home)
    assert not dead.exists() and live.exists()
