"""Prepare, key and launch an SFT run: catalog rows -> run folder -> torchrun subprocess, lines streamed.

A run is keyed by (dataset content, config hash, code version): the dataset is the sorted sample ids (each id
is already a content hash of the sample's text and images), the code version a hash of the training and
model sources plus the DeepSpeed config. Its folder is <home>/runs/sft/stage<N>/<key>/; a folder with DONE
is a finished run and is not run again. A relaunch of an unfinished one resumes from its last checkpoint.
Stage 1 publishes its final weights through runs/sft/stage1/LATEST, which stage 2 starts from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
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
from thyme_core.sft import checkpoint
from thyme_core.sft.config import REPO, SftConfig

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
    latest = stage_dir(home, 1) / "LATEST"
    if not latest.exists():
        raise ThymeError(f"stage 2 starts from stage 1's weights, and {home.root} has no finished stage 1 run "
                         "(run `thyme train-sft --stage 1` first, or pass --init-from)")
    return checkpoint.final_dir(stage_dir(home, 1) / latest.read_text().strip())


def _identity(path: Path, home: DataHome) -> str:
    try:
        return home.relative(path)
    except ValueError:
        return str(Path(path).resolve())


def prepare_run(home: DataHome, cfg: SftConfig) -> RunSpec:
    """Select the samples, compute the run key, write config.json / run.json / samples.parquet once."""
    samples = select_samples(home, cfg)
    if not samples:
        raise ThymeError(f"no samples in splits {list(cfg.splits)} of {home.root} (run `thyme prepare` first)")
    model = resolve_start_model(home, cfg)
    parts = [dataset_hash(samples), cfg.replace(model=_identity(model, home), init_from=None).config_hash(),
             code_version(cfg)]
    key = hashlib.sha256(":".join(parts).encode()).hexdigest()[:16]
    run_dir = stage_dir(home, cfg.stage) / key
    resolved = cfg.replace(model=str(model), output_dir=str(run_dir))
    if not (run_dir / "DONE").exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        _write(run_dir / "config.json", resolved.to_json().encode())
        _write(run_dir / "run.json", json.dumps({"home": str(home.root), "key": key, "dataset": parts[0],
                                                 "config": parts[1], "code": parts[2]}).encode())
        buf = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(samples), buf)
        _write(run_dir / "samples.parquet", buf.getvalue().to_pybytes())
    return RunSpec(run_dir, key, resolved, len(samples), (run_dir / "DONE").exists())


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(module: str, run_dir: Path, nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", module, str(run_dir)]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DS_ACCELERATOR", "cpu" if not env.get("CUDA_VISIBLE_DEVICES") else "cuda")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    env.setdefault("OMP_NUM_THREADS", "1")
    # the ranks' lines go to the run log: no weight-loading progress bars, no torch deprecation notices
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def launch(spec: RunSpec, on_line: Callable[[str], None], on_metrics: Callable[[dict], None]) -> int:
    return run_torchrun("thyme_core.sft.entry", spec.run_dir, spec.config.nproc, on_line, on_metrics)


def run_torchrun(module: str, run_dir: Path, nproc: int, on_line: Callable[[str], None],
                 on_metrics: Callable[[dict], None]) -> int:
    """`torchrun -m module RUN_DIR`: lines with METRICS {json} (parsed) go to on_metrics, the rest to on_line;
    returns the exit code. SFT (train/entry.py) and RL (rl/entry.py) ranks both speak this protocol."""
    proc = subprocess.Popen(torchrun_command(module, run_dir, nproc), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=environment(), cwd=REPO, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        at = line.find("METRICS {")
        if at >= 0:
            on_metrics(json.loads(line[at + len("METRICS "):]))
        else:
            on_line(line)
    return proc.wait()


def finish(home: DataHome, spec: RunSpec) -> Path:
    """After a successful run: check DONE, point the stage's LATEST at it; returns the final weights folder."""
    if not (spec.run_dir / "DONE").exists():
        raise RuntimeError(f"{spec.run_dir}: training exited without DONE")
    _write(stage_dir(home, spec.config.stage) / "LATEST", spec.key.encode())
    return checkpoint.final_dir(spec.run_dir)


def read_metrics(run_dir: Path) -> list[dict]:
    """The step records of metrics.jsonl, the last record of each step (a resumed run rewrites some)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    by_step = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            by_step[rec["step"]] = rec
    return [by_step[s] for s in sorted(by_step)]


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
