"""Replay: re-run every code block of prepared samples in the sandbox and compare with what was recorded
(verify.py). The stage's entry points are re-exported here."""

from thyme_core.replay.verify import (ReplayConfig, ReplayShardResult, code_version, prepared_shards, replay_key,
                                      replay_shard, summary_markdown)

__all__ = ["ReplayConfig", "ReplayShardResult", "code_version", "prepared_shards", "replay_key", "replay_shard",
           "summary_markdown"]
