"""Evaluation on VLMEvalKit TSV benchmarks: plan shards, run each through the agent loop, score, report.

A run is identified by the benchmark file's content, the backend spec and the loop settings (or an explicit
run id); each shard of rows publishes one folder shards/agent/eval-<key>/ with its trajectories and
eval_results. A shard whose folder exists is finished: a re-run skips it, so an interrupted evaluation
resumes where it stopped and a repeated one costs nothing.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from thyme_core.eval import benchmarks
from thyme_core.agent.answers import match_choice, score_choice
from thyme_core.agent.config import AgentConfig
from thyme_core.agent.infer import BackendSpec, cached_backend
from thyme_core.agent.prompt import load_system_prompt
from thyme_core.agent.records import publish, shard_dir, to_records
from thyme_core.agent.runner import Agent
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.catalog.schema import EvalResult


@dataclass(frozen=True)
class EvalShard:
    run_id: str
    benchmark: str
    tsv: str
    start: int
    stop: int

    @property
    def key(self) -> str:
        return "eval-" + hashlib.sha256(f"{self.run_id}:{self.benchmark}:{self.start}:{self.stop}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class ShardOutcome:
    key: str
    reused: bool
    samples: int
    correct: int


def run_id_for(tsv: str | Path, spec: BackendSpec, config: AgentConfig) -> str:
    system = hashlib.sha256(load_system_prompt(config.system_prompt or None).encode()).hexdigest()
    text = f"{benchmarks.file_sha256(tsv)}:{spec.fingerprint()}:{config.fingerprint()}:{system}"
    return "eval-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def plan(tsv: str | Path, spec: BackendSpec, config: AgentConfig, shard_rows: int = 32,
         run_id: str = "") -> list[EvalShard]:
    if shard_rows <= 0:
        raise ThymeError("shard_rows must be positive")
    if not Path(tsv).is_file():
        raise ThymeError(f"{tsv}: no such benchmark file")
    n = benchmarks.count_rows(tsv)
    run_id = run_id or run_id_for(tsv, spec, config)
    name = benchmarks.benchmark_name(tsv)
    return [EvalShard(run_id, name, str(Path(tsv).resolve()), s, min(s + shard_rows, n)) for s in range(0, n, shard_rows)]


def eval_shard(shard: EvalShard, home: DataHome, spec: BackendSpec, config: AgentConfig) -> ShardOutcome:
    """Run and score one shard's rows, or reuse its published folder."""
    import pyarrow.parquet as pq

    final = shard_dir(home, shard.key)
    if (final / "eval_results.parquet").exists():
        correct = pq.read_table(final / "eval_results.parquet", columns=["correct"]).column("correct").to_pylist()
        return ShardOutcome(shard.key, True, len(correct), sum(correct))
    backend = cached_backend(spec, home)
    agent = Agent(backend, home, config, run_id=shard.run_id)
    bench_rows = list(benchmarks.read_rows(shard.tsv, shard.start, shard.stop))
    samples = [agent.sample(f"{shard.benchmark}:{row.index}", base64.b64decode(row.image_b64), row.prompt())
               for row in bench_rows]
    # the shard's rows in one lockstep batch: a batching backend (vLLM) gets one call per step, and sandbox
    # runs overlap generation; the trajectories are those of running the rows one by one
    trajectories, _ = agent.run_samples(samples)
    rows, results = [], []
    for row, sample, traj in zip(bench_rows, samples, trajectories):
        sample_id = sample.sample_id
        correct = score_choice(traj.answer, row.options, row.answer) if row.options else _exact(traj.answer, row.answer)
        rows.append(to_records(traj, shard.run_id, benchmark=shard.benchmark, correct=correct, backend=spec.name,
                               model=backend.model, config=config.fingerprint()))
        results.append(EvalResult(shard.run_id, shard.benchmark, row.index, row.category, sample_id, traj.answer,
                                  match_choice(traj.answer, row.options) or "", row.answer, correct,
                                  traj.stop_reason))
    publish(home, shard.key, rows, results)
    return ShardOutcome(shard.key, False, len(results), sum(r.correct for r in results))


def _exact(prediction: str, answer: str) -> bool:
    """Open questions (no options): case- and space-insensitive equality."""
    return " ".join(prediction.lower().split()) == " ".join(answer.lower().split()) != ""


def report_markdown(home: DataHome, run_id: str) -> str:
    """Accuracy by benchmark and category as a markdown table (the named query eval_accuracy)."""
    from thyme_core import catalog

    one_run = f"SELECT * EXCLUDE (run_id) FROM ({catalog.sql_text('queries/eval_accuracy').strip().rstrip(';')}) " \
              "WHERE run_id = ? ORDER BY benchmark, category = '(all)' DESC, category"
    columns, rows = catalog.query(home, one_run, [run_id])
    lines = [f"## evaluate: run `{run_id}`", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines if rows else lines[:2] + ["none"])
