"""The prepare summary: this run, this split in the catalog and the home's totals apart; empty sections say
"none"; one log line per shard with its counts."""

from thyme_core.catalog.schema import ShardRun, ShardSummary
from thyme_core.prepare.report import PrepareReport, describe_shard
from thyme_core.prepare.shards import ShardResult


def _report(**kw):
    base = dict(split="b.v2", shards_run=1, shards_reused=2, samples_image=3, samples_text=0, samples_rl=0,
                rejects=1, images_seen=6, images_written=4, images_repaired=0, wall_seconds=2.0,
                by_split=(("a", 10, 1, 5, 20), ("b.v2", 3, 0, 2, 6)), rl_by_split=(),
                rejects_by_reason=(("a", "truncated_image", 4),))
    return PrepareReport(**{**base, **kw})


def test_split_row_and_home_totals_are_apart():
    md = _report().markdown()
    mine, home = md.split("### The data home's totals")
    assert "| b.v2 | 3 | 0 | 2 | 6 |" in mine and "| a |" not in mine  # another split is not this run's
    assert "| 2 | 13 | 1 | 7 | 26 |" in home  # 2 splits, summed
    assert "- rejects: 4 in all splits" in home
    assert "already done (reused" in mine


def test_empty_sections_say_none():
    md = _report(by_split=(), rejects_by_reason=()).markdown()
    # this split has no rows, no rejects, and the home has no totals: three "none", no bare table headers
    assert md.count("\nnone\n") == 3 and "| split |" not in md and "| splits |" not in md


def test_shard_line_has_counts_and_rate():
    s = ShardSummary(shard="k", split="s", source_file="a.parquet", row_start=0, row_stop=250, samples_image=248,
                     samples_text=0, samples_rl=0, rejects=2, images_seen=496, images_repaired=0, code_version="c")
    assert describe_shard(ShardResult(s, reused=False, run=ShardRun("k", 490, 2.0, "host"))) == (
        "a.parquet rows 0-250: 248 samples, 2 rejects, 496 images (490 new) in 2.0 s, 248 images/s")
    assert describe_shard(ShardResult(s, reused=True)).endswith("already done by an earlier run (reused)")
