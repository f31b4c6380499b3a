"""Data preparation: Thyme SFT and RL files into a clean catalog.

source.py (reading Parquet/JSONL shards), s3_source.py (s3:// sources, read by range), hub.py (hf:// sources),
hub_range.py (hf:// files read by range, on a cluster), paths.py (path rewriting), shards.py (one shard: decode,
rewrite, write), rl.py (RL prompts), report.py (run summaries). The stage's entry points are re-exported here.
"""

from thyme_core.prepare.shards import (PrepareConfig, ShardResult, code_version, finished, plan, plan_hub_file,
                                       plan_hub_ranges, prepare_shard, read_summary, resolve_hub, shard_dir)

__all__ = ["PrepareConfig", "ShardResult", "code_version", "finished", "plan", "plan_hub_file", "plan_hub_ranges",
           "prepare_shard", "read_summary", "resolve_hub", "shard_dir"]
