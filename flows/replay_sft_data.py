"""Flow `replay_sft_data`: re-execute every code block of a prepared split in the sandbox and compare.

Outputs, in the data home: shards/replay/<key>/replays.parquet (one row per code block), the catalog view
`replays` and the named queries replay_summary / replay_failures, and a markdown summary artifact.
"""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from tasks import user_errors
from tasks.progress import wait_with_progress
from tasks.replay import list_prepared_shards, replay_report, replay_shard
from thyme_core.base.home import resolve_home
from thyme_core.base.names import check_name
from thyme_core.replay.verify import ReplayConfig

user_errors.install()


# Shard tasks are threads: the work happens in sandbox interpreters, which are processes of their own.
@flow(name="replay_sft_data", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def replay_sft_data(
    split: str,
    home: str | None = None,
    min_similarity: Annotated[float, Field(ge=0.0, le=1.0)] = 0.98,
    timeout_s: Annotated[float, Field(gt=0.0)] = 20.0,
    isolation: Literal["bwrap", "none"] = "bwrap",
) -> dict:
    """Re-run every code block of a prepared split in the sandbox and compare with the recorded outputs.

    Args:
        split: The prepared split to replay (as given to prepare_sft_data).
        home: The data home folder on the worker's machine that holds the prepared split. Empty: the
            worker's THYME_HOME, which `thyme serve --home DIR` sets, else ~/.local/share/thyme.
        min_similarity: Pixel similarity (0 to 1) from which an output image counts as the recorded one.
            Changing it replays every shard again under a new key.
        timeout_s: Wall-clock seconds allowed to each code block.
        isolation: bwrap runs the code in a bubblewrap sandbox (no network, read-only files); none runs it
            unisolated, for trusted data only.
    """
    check_name("split", split)
    config = ReplayConfig(min_similarity=min_similarity, timeout_s=timeout_s, isolation=isolation)
    home_root = str(resolve_home(home).root)
    shards = list_prepared_shards(home_root, split)
    futures = [replay_shard.submit(shard, home_root, config) for shard in shards]
    results = wait_with_progress(futures, f"replay {split}", postfix=lambda r: {"blocks": r.blocks, "matched": r.matched})
    markdown = replay_report(home_root, split, results)
    out = {"split": split, "shards": len(results), "shards_reused": sum(r.reused for r in results),
           "blocks": sum(r.blocks for r in results), "matched": sum(r.matched for r in results)}
    get_run_logger().info(f"replay {split}: {out['shards'] - out['shards_reused']} shards replayed, "
                          f"{out['shards_reused']} reused; {out['matched']}/{out['blocks']} code blocks reproduced")
    return {**out, "report": markdown}
