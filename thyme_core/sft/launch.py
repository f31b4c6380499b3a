"""Prepare, key and launch an SFT run: catalog rows -> run folder -> torchrun subprocess, lines streamed.

A run is keyed (runs/folder.py) by (dataset content, config hash, code version): the dataset is the sorted
sample ids (each id is already a content hash of the sample's text and images), the code version the import
closure of the ranks' entry plus the DeepSpeed config. Its folder is <home>/runs/sft/stage<N>/<key>/; a folder
with DONE is a finished run and is not run again. A relaunch of an unfinished one resumes from its last
checkpoint. Stage 1 publishes its final weights through runs/sft/stage1/LATEST, which stage 2 starts from.
The samples may come from another home than the run's (a dataset version pulled into the worker's cache).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from thyme_core import catalog
from thyme_core.base import versioning
from thyme_core.base.errors import ThymeError
from thyme_core.base.home import DataHome
from thyme_core.model import resolve_model_path
from thyme_core.runs import checkpoint, folder, remote, launch as runs_launch
from thyme_core.runs.metrics import read_metrics as _read_metrics
from thyme_core.sft.config import SftConfig

_COLUMNS = "id, split, question, response, image_paths, has_image"


@dataclass(frozen=True)
class RunSpec:
    run_dir: Path
    key: str
    config: SftConfig  # with `model` resolved to a folder
    samples: int
    done: bool


def stage_dir(home: DataHome, stage: int) -> Path:
    return home.root / "runs" / "sft" / f"stage{stage}"


def select_samples(home: DataHome, cfg: SftConfig) -> list[dict]:
    where = "split IN (SELECT unnest(?))" + (" AND has_image" if cfg.image_only else "")
    columns, rows = catalog.query(home, f"SELECT {_COLUMNS} FROM sft_samples WHERE {where} ORDER BY id",
                                  [list(cfg.splits)])
    return [dict(zip(columns, r)) for r in rows]


def dataset_hash(samples: list[dict]) -> str:
    return hashlib.sha256("\n".join(sorted(s["id"] for s in samples)).encode()).hexdigest()[:16]


def code_version(cfg: SftConfig) -> str:
    """The ranks' code (the entry's import closure) and the DeepSpeed config they load."""
    return versioning.code_version("thyme_core.sft.entry", data=[cfg.deepspeed_path()])


def resolve_start_model(home: DataHome, cfg: SftConfig) -> Path:
    """Stage 1: the given model or the tiny one. Stage 2: init_from, else stage 1's latest final weights."""
    if cfg.stage == 1:
        return resolve_model_path(cfg.model, home)
    if cfg.init_from:
        return resolve_model_path(cfg.init_from, home)
    latest = folder.latest(stage_dir(home, 1))
    if latest is None:
        raise ThymeError(f"stage 2 starts from stage 1's weights, and {home.root} has no finished stage 1 run "
                         "(run `thyme train-sft --stage 1` first, or pass --init-from)")
    return checkpoint.final_dir(stage_dir(home, 1) / latest)


def prepare_run(home: DataHome, cfg: SftConfig, data: DataHome | None = None, store: str | None = None
                ) -> RunSpec:
    """Select the samples (from `data`, default the run's home), compute the run key, write config.json /
    run.json / samples.parquet once. With `store`, checkpoints are pushed there as they are saved and a
    run folder without them starts from the store's newest (runs/remote.py)."""
    data = data or home
    samples = select_samples(data, cfg)
    if not samples:
        raise ThymeError(f"no samples in splits {list(cfg.splits)} of {data.root} (run `thyme prepare` first)")
    model = resolve_start_model(home, cfg)
    parts = [dataset_hash(samples), cfg.replace(model=folder.identity(model, home), init_from=None).config_hash(),
             code_version(cfg)]
    key = folder.run_key(parts)
    run_dir = stage_dir(home, cfg.stage) / key
    resolved = cfg.replace(model=str(model), output_dir=str(run_dir))
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(samples), buf)
    folder.write_once(run_dir, {
        "config.json": resolved.to_json().encode(),
        "run.json": json.dumps({"home": str(data.root), "key": key, "dataset": parts[0], "config": parts[1],
                                "code": parts[2], "store": store}).encode(),
        "samples.parquet": buf.getvalue().to_pybytes()})
    if store and not folder.is_done(run_dir):
        remote.restore(run_dir, cfg.world)
    return RunSpec(run_dir, key, resolved, len(samples), folder.is_done(run_dir))


def launch(spec: RunSpec, on_line: Callable[[str], None], on_metrics: Callable[[dict], None],
           nodes: runs_launch.Nodes = runs_launch.Nodes()) -> int:
    """Run the ranks (runs/remote.launch: checkpoints pushed to the run's store, if any, in the background)."""
    return remote.launch("thyme_core.sft.entry", spec.run_dir, spec.config.nproc, on_line, on_metrics, nodes)


def finish(home: DataHome, spec: RunSpec) -> Path:
    """After a successful run: check DONE, point the stage's LATEST at it; returns the final weights folder."""
    if not folder.is_done(spec.run_dir):
        raise RuntimeError(f"{spec.run_dir}: training exited without DONE")
    folder.set_latest(stage_dir(home, spec.config.stage), spec.key)
    return checkpoint.final_dir(spec.run_dir)


def read_metrics(run_dir: Path) -> list[dict]:
    """The step records of metrics.jsonl, the last record of each step (a resumed run rewrites some)."""
    return _read_metrics(run_dir, keep="loss")


def as_dict(spec: RunSpec) -> dict:
    return {"run_dir": str(spec.run_dir), "key": spec.key, "samples": spec.samples, "done": spec.done,
            "config": dataclasses.asdict(spec.config)}


def format_metrics(m: dict) -> str:
    if "loss" not in m:
        return json.dumps(m)
    return (f"step {m['step']} [{m['kind']}] loss {m['loss']:.4f} lr {m['lr']:.3g} "
            f"tokens/s {m['tokens_per_s']:.0f} padding {m['padding']:.3f}")


def report_markdown(spec: RunSpec) -> str:
    """A short markdown summary of a run: plan, drops, and the metrics of its steps."""
    plan_path = spec.run_dir / "plan.json"
    plan = json.loads(plan_path.read_text()) if plan_path.exists() else {}
    lines = [f"# SFT stage {spec.config.stage}, run `{spec.key}`", "",
             f"- run folder: `{spec.run_dir}`", f"- model: `{spec.config.model}`",
             f"- samples {plan.get('samples')}, examples {plan.get('examples')}, drops {plan.get('drops')}",
             f"- steps {plan.get('steps')} ({plan.get('kinds')}), planned padding {plan.get('planned_padding')}",
             "", "| step | kind | loss | lr | tokens/s | padding |", "|---|---|---|---|---|---|"]
    for m in read_metrics(spec.run_dir):
        lines.append(f"| {m['step']} | {m['kind']} | {m['loss']:.4f} | {m['lr']:.3g} | "
                     f"{m['tokens_per_s']:.0f} | {m['padding']:.3f} |")
    return "\n".join(lines)
