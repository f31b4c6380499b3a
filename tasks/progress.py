"""Waiting on many task futures with a progress bar (terminal) and a Prefect progress artifact (UI).

The run page lists artifacts by description, so the description carries the percentage and the count of
finished shards ("prepare 2round: 42% (5/12 shards)"), updated with the progress itself.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed
from tqdm import tqdm

from tasks.artifacts import describe


def _label(desc: str, done: int, total: int) -> str:
    pct = 100.0 * done / total if total else 100.0
    return describe(f"{desc}: {pct:.0f}% ({done}/{total} shards)")


def wait_with_progress(futures: list[PrefectFuture], desc: str, postfix: Callable[[Any], dict] | None = None) -> list:
    """Results in submission order; the bar advances as each future completes."""
    index = {f.task_run_id: i for i, f in enumerate(futures)}
    results: list = [None] * len(futures)
    n = len(futures)
    artifact = create_progress_artifact(progress=0.0 if n else 100.0, description=_label(desc, 0, n))
    totals: dict = {}
    with tqdm(total=n, desc=desc, unit="shard", file=sys.stderr, disable=not futures) as bar:
        for done, future in enumerate(as_completed(futures), start=1):
            result = future.result()
            results[index[future.task_run_id]] = result
            if postfix:
                for k, v in postfix(result).items():
                    totals[k] = totals.get(k, 0) + v
                bar.set_postfix(totals)
            bar.update(1)
            update_progress_artifact(artifact, progress=100.0 * done / n, description=_label(desc, done, n))
    return results
