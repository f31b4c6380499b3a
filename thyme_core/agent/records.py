"""Trajectories as catalog rows, and publishing them: one folder per finished shard under shards/agent/.

A shard folder holds trajectories.parquet, turns.parquet, executions.parquet (and eval_results.parquet for
evaluation), written to a staging folder and renamed into place at once (fsio.atomic_dir): a folder that
exists is complete, which is how a re-run knows what is finished.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq

from thyme_core import catalog
from thyme_core.agent.loop import Trajectory
from thyme_core.base.fsio import atomic_dir
from thyme_core.base.home import DataHome
from thyme_core.catalog.schema import EvalResult, ExecutionRecord, TrajectoryRecord, TurnRecord, to_table

TABLE = "agent"
_ERROR_TYPE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")


def error_type(status: str, error: str) -> str:
    """The taxonomy key of a failed execution: the exception type for errors, else the status itself.

    >>> error_type("error", "ZeroDivisionError: division by zero")
    'ZeroDivisionError'
    >>> error_type("timeout", "wall-clock limit of 10s")
    'timeout'
    >>> error_type("ok", "")
    ''
    """
    if status == "ok":
        return ""
    m = _ERROR_TYPE.match(error.strip().splitlines()[-1] if error.strip() else "")
    return m.group(1) if status == "error" and m else status


def to_records(traj: Trajectory, run_id: str, *, benchmark: str = "", correct: bool | None = None,
               backend: str = "", model: str = "", config: str = ""
               ) -> tuple[TrajectoryRecord, list[TurnRecord], list[ExecutionRecord]]:
    ledger, sid = traj.ledger, traj.sample.sample_id
    counts = ledger.counts()
    fed = [im for e in traj.executions for im in e.images]
    input_path = traj.sample.image_ref
    grids = [v for s in ledger.images for v in s.grid_thw]
    record = TrajectoryRecord(
        run_id=run_id, sample_id=sid, benchmark=benchmark, question=traj.sample.question,
        image_sha256=[traj.sample.sha256, *[im.sha256 for im in fed]],
        image_paths=[input_path, *[im.ref for im in fed]],
        response=traj.response, answer=traj.answer, correct=correct, stop_reason=traj.stop_reason,
        rounds=len(traj.executions), prompt_tokens=counts["prompt"], generated_tokens=counts["generated"],
        sandbox_tokens=counts["sandbox"], image_tokens=counts["image"], total_tokens=counts["total"],
        token_ids=list(ledger.ids), token_mask=list(ledger.mask), image_offsets=[s.offset for s in ledger.images],
        image_grid_thw=grids, generate_s=round(traj.generate_s, 4), sandbox_s=round(traj.sandbox_s, 4),
        total_s=round(traj.total_s, 4), backend=backend, model=model, config=config,
    )
    turns = [TurnRecord(run_id, sid, t.round, t.text, t.code, t.generated_tokens, t.finish) for t in traj.turns]
    execs = [ExecutionRecord(run_id, sid, e.round, e.status, error_type(e.status, e.error), e.error, e.stdout[:4000],
                             round(e.duration_s, 4), [im.sha256 for im in e.images], e.fed_back, e.feedback_tokens)
             for e in traj.executions]
    return record, turns, execs


def shard_dir(home: DataHome, key: str) -> Path:
    return home.shards_dir / TABLE / key


def publish(home: DataHome, key: str, rows: list[tuple[TrajectoryRecord, list, list]],
            eval_results: list[EvalResult] | None = None) -> Path:
    """Write one shard folder (atomically); returns its final path."""
    final = shard_dir(home, key)
    with atomic_dir(final, home.tmp_dir) as stage:
        parts = {
            "trajectories": (TrajectoryRecord, [r for r, _, _ in rows]),
            "turns": (TurnRecord, [t for _, ts, _ in rows for t in ts]),
            "executions": (ExecutionRecord, [e for _, _, es in rows for e in es]),
        }
        if eval_results is not None:
            parts["eval_results"] = (EvalResult, eval_results)
        for name, (cls, records) in parts.items():
            pq.write_table(to_table(cls, records), stage / f"{name}.parquet", compression="zstd")
    catalog.publish(home)
    return final
