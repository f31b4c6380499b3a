"""Replay verification with the real sandbox: synthetic data reproduces at 100%; tampered samples do not,
each with the reason a user would look for."""

import copy
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thyme_core import catalog, prepare, replay
from thyme_core.replay import verify
from thyme_core.synth import bad, generate_records
from thyme_core.synth.writer import SCHEMA
from thyme_core.thyme_format import SANDBOX_OUTPUT_RE

CONFIG = prepare.PrepareConfig(shard_rows=8)


def _prepare(home, tmp_path, split, rows):
    path = tmp_path / f"{split}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path, row_group_size=8)
    for spec in prepare.plan(path, split, CONFIG, home):
        prepare.prepare_shard(spec, home, CONFIG)


def _replay_all(home, split):
    for shard in replay.prepared_shards(home, split):
        replay.replay_shard(Path(shard), home, replay.ReplayConfig(isolation="bwrap"))
    return catalog.read(home)


@pytest.mark.parametrize("split", ["wo_thinking_thyme_single_round", "2round", "computation"])
def test_synthetic_data_replays_at_100_percent(home, tmp_path, split):
    _prepare(home, tmp_path, split, list(generate_records(split, 8, 5, 320, 240, 1)))
    con = _replay_all(home, split)
    failures = con.execute("SELECT sample_id, block, reason, detail FROM replays WHERE status <> 'match'").fetchall()
    assert failures == []
    columns, rows = catalog.named(home, "replay_summary")
    summary = dict(zip(columns, rows[0]))
    assert summary["split"] == split and summary["reproduced"] == summary["samples_with_code"] > 0


def test_tampered_samples_are_caught_with_their_reason(home, tmp_path):
    single = list(generate_records("2round", 3, 1, 320, 240, 1))
    swapped = bad.with_image(single[0], bad.rgb_jpeg(), index=1)  # the recorded crop replaced by another picture
    comp = next(r for r in generate_records("computation", 12, 1, 320, 240, 1) if not r["image"])
    wrong_text = copy.deepcopy(comp)
    m = SANDBOX_OUTPUT_RE.search(wrong_text["response"])
    wrong_text["response"] = wrong_text["response"][: m.start("body")] + "12345.678" + wrong_text["response"][m.end("body"):]
    crash = copy.deepcopy(comp)
    crash["response"] = crash["response"].replace("```python\n", "```python\nraise ValueError('boom')\n", 1)
    _prepare(home, tmp_path, "mixed", [swapped, wrong_text, crash])
    con = _replay_all(home, "mixed")
    reasons = sorted(r[0] for r in con.execute("SELECT reason FROM replays WHERE block = 0").fetchall())
    assert reasons == ["error", "size_differs", "text_differs"]
    detail = con.execute("SELECT detail FROM replays WHERE reason = 'error'").fetchone()[0]
    assert "ValueError: boom" in detail


def test_replay_is_reused_once_published(home, tmp_path):
    _prepare(home, tmp_path, "2round", list(generate_records("2round", 2, 2, 320, 240, 1)))
    shard = Path(replay.prepared_shards(home, "2round")[0])
    first = replay.replay_shard(shard, home, replay.ReplayConfig())
    mtime = (first.folder / "replays.parquet").stat().st_mtime_ns
    again = replay.replay_shard(shard, home, replay.ReplayConfig())
    assert (again.folder, again.reused, again.blocks) == (first.folder, True, first.blocks) and not first.reused
    assert (first.folder / "replays.parquet").stat().st_mtime_ns == mtime
    other = replay.replay_shard(shard, home, replay.ReplayConfig(min_similarity=0.9))  # new settings: new key
    assert other.folder != first.folder and not other.reused


@pytest.mark.parametrize(
    "printed, recorded, status",
    [
        ("42\n", "42", "match"),  # trailing newline of print()
        ("Area: 12.566370614359172", "Area: 12.566370614359174", "match"),  # last-digit float noise
        ("Area: 12.57", "Area: 12.566", "mismatch"),  # rounding differs: a different value
        ("total = 3 apples", "total = 3  apples", "match"),  # whitespace only
        ("3 4", "4 3", "mismatch"),  # same numbers, different order
    ],
)
def test_text_comparison(printed, recorded, status):
    assert verify._compare_text(printed, recorded, replay.ReplayConfig())[0] == status


def test_a_replay_records_how_it_ran_beside_its_content_never_in_a_version(home, tmp_path):
    # Replay timings were recorded nowhere (a scale plan took seconds per block from a guess): each replayed
    # shard now keeps its wall time, samples, blocks and host in replays.run.parquet, like prepare's
    # summary.run.parquet: a view shows it, and a version of the home leaves it out (same content, same hash).
    from thyme_core.versions.manifest import version_paths

    _prepare(home, tmp_path, "2round", list(generate_records("2round", 3, 2, 320, 240, 1)))
    shard = Path(replay.prepared_shards(home, "2round")[0])
    result = replay.replay_shard(shard, home, replay.ReplayConfig())
    assert result.run is not None and result.run.blocks == result.blocks > 0 and result.run.seconds > 0
    assert "blocks/s" in verify.describe_shard(result)
    columns, rows = catalog.query(home, "SELECT shard, prepare_shard, samples, blocks, seconds_per_block "
                                        "FROM replay_shard_runs")
    assert rows == [(result.folder.name, shard.name, 3, result.blocks, rows[0][4])] and rows[0][4] > 0
    versioned = {p.name for p in version_paths(home) if "_schema" not in p.parts}
    assert "replays.parquet" in versioned and "replays.run.parquet" not in versioned
    again = replay.replay_shard(shard, home, replay.ReplayConfig())
    assert again.reused and again.run is None and "blocks/s" not in verify.describe_shard(again)
