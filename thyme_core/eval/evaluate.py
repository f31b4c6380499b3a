"""Evaluation on VLMEvalKit TSV benchmarks: plan shards, run each through the agent loop, score, report.

A run is identified by the benchmark file's content, the backend spec, the loop settings and the scoring
(protocol, retries, judge) (or an explicit run id); each shard of rows publishes one folder
shards/agent/eval-<key>/ with its trajectories and eval_results. A shard whose folder exists is finished: a
re-run skips it, so an interrupted evaluation resumes where it stopped and a repeated one costs nothing.

Scoring protocols (`EvalScoring.protocol`, recorded in every eval_results row and in the run id):
- `thyme` (default): agent/answers.py's matcher, which reads what an answer plainly means;
- `vlmevalkit`: VLMEvalKit's rule stage and judge fallback (eval/vlmevalkit.py), for numbers comparable with
  published ones. `retries` re-runs a trajectory that ended without an answer up to N times, as VLMEvalKit
  re-asks a model whose reply failed (off by default); the retries are recorded under their own sample ids
  (`<benchmark>:<index>~retry<k>`) and the row is scored on the last one.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from thyme_core.eval import benchmarks, vlmevalkit
from thyme_core.agent.answers import match_choice, score_choice
from thyme_core.agent.config import AgentConfig
from thyme_core.agent.infer import BackendSpec, cached_backend
from thyme_core.agent.prompt import load_system_prompt
from thyme_core.agent.records import publish, shard_dir, to_records
from thyme_core.agent.runner import Agent
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.catalog.schema import EvalResult


PROTOCOLS = ("thyme", "vlmevalkit")


@dataclass(frozen=True)
class EvalScoring:
    protocol: str = field(default="thyme",
                          metadata={"help": "thyme (our matcher) or vlmevalkit (its rules + judge)"})
    retries: int = field(default=0, metadata={"help": "re-runs of a trajectory that ended without an answer"})
    judge_url: str = field(default="", metadata={"help": "vlmevalkit: OpenAI-compatible judge base URL ('' = none, "
                                                         "or THYME_JUDGE_URL)"})
    judge_model: str = field(default="", metadata={"help": "vlmevalkit: the judge's served model name"})

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ThymeError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}")
        if self.retries < 0:
            raise ThymeError("retries must be >= 0")

    def key(self) -> str:
        """What changes the scores ("" for the default, so runs from before the field keep their ids)."""
        if self == EvalScoring():
            return ""
        return f":{self.protocol}:{self.retries}:{self.judge_url}:{self.judge_model}"

    def judge(self):
        """The judge client for the vlmevalkit protocol, or None (VLMEvalKit's exact-matching mode)."""
        import os

        from thyme_core.rl.judge import Judge, JudgeConfig

        url = self.judge_url or os.environ.get("THYME_JUDGE_URL", "")
        if self.protocol != "vlmevalkit" or not url:
            return None
        return Judge(JudgeConfig.from_env(base_url=url, **({"model": self.judge_model} if self.judge_model else {})))


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


def run_id_for(tsv: str | Path, spec: BackendSpec, config: AgentConfig,
               scoring: EvalScoring = EvalScoring()) -> str:
    """eval-<hash> for our protocol, eval-vlmevalkit-<hash> for VLMEvalKit's: the protocol shows in the id."""
    system = hashlib.sha256(load_system_prompt(config.system_prompt or None).encode()).hexdigest()
    text = f"{benchmarks.file_sha256(tsv)}:{spec.fingerprint()}:{config.fingerprint()}:{system}{scoring.key()}"
    prefix = "eval-" if scoring.protocol == "thyme" else f"eval-{scoring.protocol}-"
    return prefix + hashlib.sha256(text.encode()).hexdigest()[:12]


def plan(tsv: str | Path, spec: BackendSpec, config: AgentConfig, shard_rows: int = 32,
         run_id: str = "", scoring: EvalScoring = EvalScoring()) -> list[EvalShard]:
    if shard_rows <= 0:
        raise ThymeError("shard_rows must be positive")
    if not Path(tsv).is_file():
        raise ThymeError(f"{tsv}: no such benchmark file")
    n = benchmarks.count_rows(tsv)
    run_id = run_id or run_id_for(tsv, spec, config, scoring)
    name = benchmarks.benchmark_name(tsv)
    return [EvalShard(run_id, name, str(Path(tsv).resolve()), s, min(s + shard_rows, n)) for s in range(0, n, shard_rows)]


def eval_shard(shard: EvalShard, home: DataHome, spec: BackendSpec, config: AgentConfig,
               scoring: EvalScoring = EvalScoring(), backend=None) -> ShardOutcome:
    """Run and score one shard's rows, or reuse its published folder. `backend`: one already loaded (a cluster
    worker keeps its model across shards, each written into a fresh scratch home); default: cached per home."""
    import pyarrow.parquet as pq

    final = shard_dir(home, shard.key)
    if (final / "eval_results.parquet").exists():
        correct = pq.read_table(final / "eval_results.parquet", columns=["correct"]).column("correct").to_pylist()
        return ShardOutcome(shard.key, True, len(correct), sum(correct))
    backend = backend or cached_backend(spec, home)
    agent = Agent(backend, home, config, run_id=shard.run_id)
    bench_rows = list(benchmarks.read_rows(shard.tsv, shard.start, shard.stop))
    attempts = _run_with_retries(agent, shard.benchmark, bench_rows, scoring.retries)
    judge = scoring.judge()
    rows, results = [], []
    for row, tried in zip(bench_rows, attempts):
        traj = tried[-1]
        choice, matched_by, correct = _score(row, traj.answer, shard.benchmark, scoring, judge,
                                             f"{shard.run_id}:{row.index}")
        for t in tried:
            rows.append(to_records(t, shard.run_id, benchmark=shard.benchmark,
                                   correct=correct if t is traj else False, backend=spec.name,
                                   model=backend.model, config=config.fingerprint()))
        results.append(EvalResult(shard.run_id, shard.benchmark, row.index, row.category, traj.sample.sample_id,
                                  traj.answer, choice, row.answer, correct, traj.stop_reason, row.cycle_category,
                                  row.l2_category, scoring.protocol, matched_by, len(tried)))
    publish(home, shard.key, rows, results)
    return ShardOutcome(shard.key, False, len(results), sum(r.correct for r in results))


def _run_with_retries(agent: Agent, benchmark: str, bench_rows: list, retries: int) -> list[list]:
    """Each row's trajectories: the first, then up to `retries` more while the last one has no answer. Every
    round of retries runs as one lockstep batch; a retry has its own sample id (and so its own sampling seed)."""
    samples = [agent.sample(f"{benchmark}:{row.index}", base64.b64decode(row.image_b64), row.prompt())
               for row in bench_rows]
    # the shard's rows in one lockstep batch: a batching backend (vLLM) gets one call per step, and sandbox
    # runs overlap generation; the trajectories are those of running the rows one by one
    first, _ = agent.run_samples(samples)
    tried = [[t] for t in first]
    for k in range(1, retries + 1):
        todo = [i for i, ts in enumerate(tried) if not ts[-1].answer]
        if not todo:
            break
        again = [agent.sample(f"{benchmark}:{bench_rows[i].index}~retry{k}", samples[i].image, samples[i].question)
                 for i in todo]
        redone, _ = agent.run_samples(again)
        for i, t in zip(todo, redone):
            tried[i].append(t)
    return tried


def _score(row, prediction: str, benchmark: str, scoring: EvalScoring, judge, seed: str) -> tuple[str, str, bool]:
    """(choice, matched_by, correct) of one row's prediction under the run's protocol."""
    if not row.options:
        return "", "exact", _exact(prediction, row.answer)
    if scoring.protocol == "thyme":
        choice = match_choice(prediction, row.options) or ""
        return choice, "thyme", score_choice(prediction, row.options, row.answer)
    regex_only = vlmevalkit.is_mme_realworld(benchmark, bool(row.choices_block))
    choice, how = vlmevalkit.choose(prediction, row.question, row.options, regex_only=regex_only, judge=judge,
                                    seed=seed)
    return choice, how, choice == row.answer.strip()


def _exact(prediction: str, answer: str) -> bool:
    """Open questions (no options): case- and space-insensitive equality."""
    return " ".join(prediction.lower().split()) == " ".join(answer.lower().split()) != ""


def report_markdown(where, run_id: str) -> str:
    """Accuracy by benchmark and category as a markdown table (the named query eval_accuracy), from `where`: a
    home, or a published version queried in place (catalog.querier)."""
    from thyme_core import catalog

    one_run = f"SELECT * EXCLUDE (run_id) FROM ({catalog.sql_text('queries/eval_accuracy').strip().rstrip(';')}) " \
              "WHERE run_id = ? ORDER BY benchmark, category = '(all)' DESC, category"
    columns, rows = catalog.querier(where)(one_run, [run_id])
    lines = [f"## evaluate: run `{run_id}`", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines if rows else lines[:2] + ["none"])
